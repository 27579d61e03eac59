package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/pflag"
	"go.etcd.io/etcd/server/v3/embed"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apiserver/pkg/util/compatibility"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	cliflag "k8s.io/component-base/cli/flag"
	apiserverapp "k8s.io/kubernetes/cmd/kube-apiserver/app"
	apiserveroptions "k8s.io/kubernetes/cmd/kube-apiserver/app/options"
	kcmapp "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	kcmoptions "k8s.io/kubernetes/cmd/kube-controller-manager/app/options"
	schedapp "k8s.io/kubernetes/cmd/kube-scheduler/app"
	schedoptions "k8s.io/kubernetes/cmd/kube-scheduler/app/options"
	"k8s.io/utils/ptr"
)

type controlPlane struct {
	opts options
	dir  string
	pki  *pki

	etcd      *embed.Etcd
	serverURL string
	client    kubernetes.Interface

	wg   sync.WaitGroup // component goroutines
	errs chan error     // a component that returned early
}

func flagSet(name string, nfs cliflag.NamedFlagSets) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	for _, f := range nfs.FlagSets {
		fs.AddFlagSet(f)
	}
	return fs
}

func (cp *controlPlane) start(ctx context.Context) (err error) {
	cp.errs = make(chan error, 8)
	t0 := time.Now()
	step := func(what string) {
		if cp.opts.verbose {
			logf("%-28s %.2fs", what, time.Since(t0).Seconds())
		}
	}

	if cp.pki, err = generatePKI(cp.dir); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	step("certificates")

	etcdURL, err := cp.startEtcd()
	if err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	step("etcd ready")

	// The apiserver gets a listener we already hold, so its port cannot be taken.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	cp.serverURL = fmt.Sprintf("https://127.0.0.1:%d", port)
	internalKubeconfig := filepath.Join(cp.dir, "admin.kubeconfig")
	if err := writeFileAtomic(internalKubeconfig, cp.pki.kubeconfig(cp.serverURL), 0o600); err != nil {
		return err
	}

	// All three components share one process-wide feature-gate/version
	// registry: build and parse every option set first, then Set() it once.
	apiArgs, err := cp.auditArgs()
	if err != nil {
		return err
	}
	apiOpts := apiserveroptions.NewServerRunOptions()
	if err := flagSet("kube-apiserver", apiOpts.Flags()).Parse(append(apiArgs, []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--cert-dir=" + cp.dir,
		"--tls-cert-file=" + cp.pki.ServingCert,
		"--tls-private-key-file=" + cp.pki.ServingKey,
		"--client-ca-file=" + cp.pki.CACert,
		"--authorization-mode=Node,RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + cp.pki.SAPub,
		"--service-account-signing-key-file=" + cp.pki.SAKey,
		"--service-cluster-ip-range=" + serviceCIDR,
		"--allow-privileged=true",
		"--max-requests-inflight=1000",
		"--max-mutating-requests-inflight=500",
		"--profiling=false",
		"--event-ttl=1h",
		// The endpoint reconciler refuses loopback addresses; there is no
		// Service data plane here anyway.
		"--endpoint-reconciler-type=none",
	}...)); err != nil {
		return fmt.Errorf("kube-apiserver flags: %w", err)
	}
	apiOpts.SecureServing.Listener = ln
	apiOpts.SecureServing.BindPort = port

	kcmOpts, err := kcmoptions.NewKubeControllerManagerOptions()
	if err != nil {
		return err
	}
	kcmFlags := kcmOpts.Flags(kcmapp.KnownControllers(), kcmapp.ControllersDisabledByDefault(), kcmapp.ControllerAliases())
	if err := flagSet("kube-controller-manager", kcmFlags).Parse([]string{
		"--kubeconfig=" + internalKubeconfig,
		"--leader-elect=false",
		"--secure-port=0",
		"--controllers=*",
		"--root-ca-file=" + cp.pki.CACert,
		"--service-account-private-key-file=" + cp.pki.SAKey,
		"--cluster-signing-cert-file=" + cp.pki.CACert,
		"--cluster-signing-key-file=" + cp.pki.CAKey,
		"--use-service-account-credentials=false",
		"--kube-api-qps=200",
		"--kube-api-burst=400",
		"--profiling=false",
	}); err != nil {
		return fmt.Errorf("kube-controller-manager flags: %w", err)
	}

	schedOpts := schedoptions.NewOptions()
	if err := flagSet("kube-scheduler", *schedOpts.Flags).Parse([]string{
		"--kubeconfig=" + internalKubeconfig,
		"--leader-elect=false",
		"--secure-port=0",
		"--kube-api-qps=200",
		"--kube-api-burst=400",
		"--profiling=false",
	}); err != nil {
		return fmt.Errorf("kube-scheduler flags: %w", err)
	}
	if err := compatibility.DefaultComponentGlobalsRegistry.Set(); err != nil {
		return err
	}

	// kube-apiserver
	completed, err := apiOpts.Complete(ctx)
	if err != nil {
		return fmt.Errorf("kube-apiserver options: %w", err)
	}
	if errs := completed.Validate(); len(errs) != 0 {
		return fmt.Errorf("kube-apiserver options: %w", utilerrors.NewAggregate(errs))
	}
	cp.goRun("kube-apiserver", func() error { return apiserverapp.Run(ctx, completed) })

	restCfg := &rest.Config{
		Host: cp.serverURL,
		TLSClientConfig: rest.TLSClientConfig{
			CAData: cp.pki.caPEM, CertData: cp.pki.adminCertPEM, KeyData: cp.pki.adminKeyPEM,
		},
		QPS: 100, Burst: 200,
	}
	if cp.client, err = kubernetes.NewForConfig(restCfg); err != nil {
		return err
	}
	if err := cp.waitFor(ctx, "kube-apiserver /readyz", 60*time.Second, func(ctx context.Context) (bool, error) {
		body, err := cp.client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err == nil && string(body) == "ok", nil
	}); err != nil {
		return err
	}
	step("kube-apiserver ready")

	// kube-controller-manager
	kcmCfg, err := kcmOpts.Config(ctx, kcmapp.KnownControllers(), kcmapp.ControllersDisabledByDefault(), kcmapp.ControllerAliases())
	if err != nil {
		return fmt.Errorf("kube-controller-manager config: %w", err)
	}
	cp.goRun("kube-controller-manager", func() error { return kcmapp.Run(ctx, kcmCfg.Complete()) })

	// kube-scheduler
	schedCfg, sched, err := schedapp.Setup(ctx, schedOpts)
	if err != nil {
		return fmt.Errorf("kube-scheduler setup: %w", err)
	}
	cp.goRun("kube-scheduler", func() error { return schedapp.Run(ctx, schedCfg, sched) })
	step("controllers started")

	if err := cp.bootstrapObjects(ctx); err != nil {
		return err
	}
	if err := startKwok(ctx, internalKubeconfig, cp.opts.verbose); err != nil {
		return fmt.Errorf("kwok: %w", err)
	}
	step("kwok started")

	if err := cp.waitFor(ctx, "default service account", 60*time.Second, func(ctx context.Context) (bool, error) {
		_, err := cp.client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	}); err != nil {
		return err
	}
	step("default service account")
	if err := cp.waitFor(ctx, "nodes Ready", 60*time.Second, func(ctx context.Context) (bool, error) {
		nodes, err := cp.client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		ready := 0
		for _, n := range nodes.Items {
			for _, c := range n.Status.Conditions {
				if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
					ready++
				}
			}
		}
		return ready >= cp.opts.nodes, nil
	}); err != nil {
		return err
	}
	step("nodes ready")
	return nil
}

// goRun runs a component; one that returns while we are not stopping is fatal.
func (cp *controlPlane) goRun(name string, f func() error) {
	cp.wg.Add(1)
	go func() {
		defer cp.wg.Done()
		err := f()
		if err == nil {
			err = errors.New("exited")
		}
		select {
		case cp.errs <- fmt.Errorf("%s: %w", name, err):
		default:
		}
	}()
}

func (cp *controlPlane) waitFor(ctx context.Context, what string, timeout time.Duration, cond wait.ConditionWithContextFunc) error {
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := wait.PollUntilContextCancel(wctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		select {
		case err := <-cp.errs:
			return false, err
		default:
		}
		return cond(ctx)
	})
	if err != nil {
		return fmt.Errorf("waiting for %s: %w", what, err)
	}
	return nil
}

// Errs reports components that stopped on their own.
func (cp *controlPlane) Errs() <-chan error { return cp.errs }

func (cp *controlPlane) startEtcd() (string, error) {
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		cport, err := freePort()
		if err != nil {
			return "", err
		}
		pport, err := freePort()
		if err != nil {
			return "", err
		}
		curl, _ := url.Parse("http://127.0.0.1:" + strconv.Itoa(cport))
		purl, _ := url.Parse("http://127.0.0.1:" + strconv.Itoa(pport))
		cfg := embed.NewConfig()
		cfg.Name = "controlplane"
		cfg.Dir = filepath.Join(cp.dir, "etcd")
		cfg.ListenClientUrls = []url.URL{*curl}
		cfg.AdvertiseClientUrls = []url.URL{*curl}
		cfg.ListenPeerUrls = []url.URL{*purl}
		cfg.AdvertisePeerUrls = []url.URL{*purl}
		cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
		cfg.ListenMetricsUrls = nil
		cfg.UnsafeNoFsync = true // throwaway data: trade durability for speed
		// etcd's default 2 GiB quota raises a NOSPACE alarm (every write fails) before the
		// apiserver's compaction catches up on a 10,000-parent benchmark's churn.
		cfg.QuotaBackendBytes = 8 << 30
		// "warn" logs every request's stats; "error" logs spurious errors
		// on shutdown. Real etcd trouble surfaces through the apiserver.
		cfg.LogLevel = "fatal"
		if cp.opts.verbose {
			cfg.LogLevel = "error"
		}
		e, err := embed.StartEtcd(cfg)
		if err != nil {
			lastErr = err
			if strings.Contains(err.Error(), "address already in use") {
				continue
			}
			return "", err
		}
		select {
		case <-e.Server.ReadyNotify():
			cp.etcd = e
			return curl.String(), nil
		case err := <-e.Err():
			e.Close()
			lastErr = err
		case <-time.After(60 * time.Second):
			e.Close()
			return "", errors.New("etcd did not become ready within 60s")
		}
	}
	return "", lastErr
}

func (cp *controlPlane) stop() {
	done := make(chan struct{})
	go func() { cp.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
	}
	if cp.etcd != nil {
		stopped := make(chan struct{})
		go func() { cp.etcd.Close(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(5 * time.Second):
		}
	}
}

// bootstrapObjects creates the default StorageClass and the simulated nodes.
func (cp *controlPlane) bootstrapObjects(ctx context.Context) error {
	sc := &storagev1.StorageClass{
		ObjectMeta: metav1.ObjectMeta{
			Name:        "standard",
			Annotations: map[string]string{"storageclass.kubernetes.io/is-default-class": "true"},
		},
		Provisioner:       "kwok.x-k8s.io/volume",
		ReclaimPolicy:     ptr.To(corev1.PersistentVolumeReclaimDelete),
		VolumeBindingMode: ptr.To(storagev1.VolumeBindingImmediate),
	}
	if _, err := cp.client.StorageV1().StorageClasses().Create(ctx, sc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("storage class: %w", err)
	}
	for i := 0; i < cp.opts.nodes; i++ {
		name := fmt.Sprintf("kwok-node-%d", i)
		podCIDR := fmt.Sprintf("10.%d.%d.0/20", 64+i/16, (i%16)*16)
		res := corev1.ResourceList{
			corev1.ResourceCPU:              resource.MustParse("32"),
			corev1.ResourceMemory:           resource.MustParse("256Gi"),
			corev1.ResourcePods:             resource.MustParse("1000"),
			corev1.ResourceEphemeralStorage: resource.MustParse("1Ti"),
		}
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{
				Name: name,
				Labels: map[string]string{
					"kubernetes.io/hostname": name,
					"kubernetes.io/os":       "linux",
					"kubernetes.io/arch":     "amd64",
					"type":                   "kwok",
				},
				Annotations: map[string]string{
					kwokNodeAnnotation:             "fake",
					"node.alpha.kubernetes.io/ttl": "0",
				},
			},
			Spec: corev1.NodeSpec{
				// One /20 per node (4094 pod IPs), used by kwok's IP pool.
				PodCIDR:  podCIDR,
				PodCIDRs: []string{podCIDR},
			},
			Status: corev1.NodeStatus{
				Capacity:    res,
				Allocatable: res,
				Addresses: []corev1.NodeAddress{
					{Type: corev1.NodeInternalIP, Address: fmt.Sprintf("10.240.%d.%d", i/250, i%250+1)},
					{Type: corev1.NodeHostName, Address: name},
				},
			},
		}
		if _, err := cp.client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("node %s: %w", name, err)
		}
	}
	return nil
}

// defaultAuditPolicy records who mutated what (no request bodies).
const defaultAuditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived, ResponseStarted]
rules:
  - level: Metadata
    verbs: [create, update, patch, delete, deletecollection]
  - level: None
`

// auditArgs are the kube-apiserver flags for --audit-log (none without it).
func (cp *controlPlane) auditArgs() ([]string, error) {
	if cp.opts.auditLog == "" {
		return nil, nil
	}
	policy := cp.opts.auditPolicy
	if policy == "" {
		policy = filepath.Join(cp.dir, "audit-policy.yaml")
		if err := writeFileAtomic(policy, []byte(defaultAuditPolicy), 0o600); err != nil {
			return nil, err
		}
	}
	return []string{
		"--audit-log-path=" + cp.opts.auditLog,
		"--audit-policy-file=" + policy,
		"--audit-log-format=json",
		"--audit-log-maxbackup=0",
	}, nil
}
