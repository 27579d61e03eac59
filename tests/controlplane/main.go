// Command controlplane runs a whole local Kubernetes control plane in one
// process, on loopback only: embedded etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler and kwok-simulated nodes/kubelets.
// It is ruleop's "envtest": see the README section "Development: the local
// control plane".
//
//	controlplane --kubeconfig PATH [--data-dir DIR] [--nodes N] [--verbose]
//
// Once the cluster is usable it writes an admin kubeconfig to PATH and prints
// exactly one line, "ready PATH", on stdout. It runs until SIGINT/SIGTERM, its
// parent process dies (--exit-with-parent, on by default) or its stdin reaches
// EOF (--exit-on-stdin-eof), then stops everything and removes its data.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
)

const (
	serviceCIDR = "10.96.0.0/16"
	serviceIP   = "10.96.0.1"
)

type options struct {
	kubeconfig     string
	dataDir        string
	nodes          int
	verbose        bool
	exitWithParent bool
	exitOnStdinEOF bool
	readyTimeout   time.Duration
	auditLog       string
	auditPolicy    string
}

func main() {
	var o options
	flag.StringVar(&o.kubeconfig, "kubeconfig", "", "where to write the admin kubeconfig once the cluster is ready (required)")
	flag.StringVar(&o.dataDir, "data-dir", "", "parent directory for the temporary data (etcd, certificates); default: the system temp dir")
	flag.IntVar(&o.nodes, "nodes", 3, "number of simulated (kwok) nodes")
	flag.BoolVar(&o.verbose, "verbose", false, "show the components' info logs on stderr (default: errors only)")
	flag.BoolVar(&o.exitWithParent, "exit-with-parent", true, "stop when the parent process dies")
	flag.BoolVar(&o.exitOnStdinEOF, "exit-on-stdin-eof", false, "stop when stdin is closed (for test harnesses that keep a pipe open)")
	flag.DurationVar(&o.readyTimeout, "ready-timeout", 120*time.Second, "give up if the cluster is not ready within this time")
	flag.StringVar(&o.auditLog, "audit-log", "", "write the kube-apiserver audit log (JSON lines) to this file; default policy: mutating requests at Metadata level")
	flag.StringVar(&o.auditPolicy, "audit-policy", "", "audit policy file for --audit-log (default: mutating requests at Metadata level)")
	flag.Parse()
	if o.kubeconfig == "" || flag.NArg() != 0 || o.nodes < 0 {
		fmt.Fprintln(os.Stderr, "usage: controlplane --kubeconfig PATH [--data-dir DIR] [--nodes N] [--verbose] [--exit-with-parent=true] [--exit-on-stdin-eof] [--audit-log PATH [--audit-policy FILE]]")
		os.Exit(2)
	}
	setupLogging(o.verbose)
	os.Exit(run(o))
}

func setupLogging(verbose bool) {
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	if verbose {
		_ = fs.Set("v", "1")
		return
	}
	// Quiet by default: drop INFO/WARNING, keep ERROR and above on stderr.
	_ = fs.Set("logtostderr", "false")
	_ = fs.Set("alsologtostderr", "false")
	_ = fs.Set("stderrthreshold", "ERROR")
	_ = fs.Set("legacy_stderr_threshold_behavior", "false")
	klog.SetOutput(io.Discard)
	rest.SetDefaultWarningHandler(rest.NoWarnings{})
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "controlplane: "+format+"\n", args...)
}

func run(o options) int {
	start := time.Now()
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)

	dir, err := os.MkdirTemp(o.dataDir, "ruleop-controlplane-")
	if err != nil {
		logf("cannot create data dir: %v", err)
		return 1
	}
	cleanupDir := func() {
		if err := os.RemoveAll(dir); err != nil {
			logf("cannot remove %s: %v", dir, err)
		}
	}

	// A harness that piped our stdout/stderr may be gone: a write to the
	// broken pipe must fail (EPIPE), not kill us before we clean up.
	signal.Ignore(syscall.SIGPIPE)

	// Stop reasons: signals, parent death, stdin EOF.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-sigs
		cancel(fmt.Errorf("received %v", s))
		<-sigs // a second signal: do not wait for a graceful shutdown
		cleanupDir()
		os.Exit(130)
	}()
	if o.exitWithParent {
		go watchParent(ctx, cancel)
	}
	if o.exitOnStdinEOF {
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			cancel(errors.New("stdin closed"))
		}()
	}

	cp := &controlPlane{opts: o, dir: dir}
	err = cp.start(ctx)
	if err == nil {
		var abs string
		abs, err = filepath.Abs(o.kubeconfig)
		if err == nil {
			err = writeFileAtomic(abs, cp.pki.kubeconfig(cp.serverURL), 0o600)
		}
		if err == nil {
			logf("ready in %.1fs: apiserver %s, data %s", time.Since(start).Seconds(), cp.serverURL, dir)
			fmt.Printf("ready %s\n", o.kubeconfig)
			_ = os.Stdout.Sync()
		}
	}
	if err != nil && ctx.Err() == nil {
		logf("failed to start: %v", err)
		cancel(err)
		cp.stop()
		cleanupDir()
		return 1
	}

	code := 0
	select {
	case <-ctx.Done():
		if o.verbose {
			logf("stopping: %v", context.Cause(ctx))
		}
	case err := <-cp.Errs():
		// A component stopped on its own: do not linger half-working.
		logf("stopping: %v", err)
		cancel(err)
		code = 1
	}
	cp.stop()
	cleanupDir()
	return code
}

// watchParent cancels ctx when this process is re-parented (its parent died).
func watchParent(ctx context.Context, cancel context.CancelCauseFunc) {
	ppid := os.Getppid()
	if ppid <= 1 {
		return
	}
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if os.Getppid() != ppid {
				cancel(errors.New("parent process exited"))
				return
			}
		}
	}
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := fmt.Sprintf("%s.tmp.%d", path, os.Getpid())
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// freePort asks the kernel for a free loopback TCP port. There is a small
// window before the caller binds it; callers retry on "address in use".
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
