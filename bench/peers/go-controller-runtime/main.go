// The Operator SDK Memcached controller (seeds/004, Go SDK part) on
// controller-runtime with its default settings, extended to do exactly what
// rules/memcached.yaml does: Deployment + Service named after the CR, labels
// app=memcached,memcached_cr=<name>; status.nodes (sorted pod names),
// status.readyReplicas and a Ready condition.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"sort"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

type MemcachedReconciler struct {
	client.Client
	Scheme *runtime.Scheme
}

func labelsFor(name string) map[string]string {
	return map[string]string{"app": "memcached", "memcached_cr": name}
}

func (r *MemcachedReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	memcached := &Memcached{}
	if err := r.Get(ctx, req.NamespacedName, memcached); err != nil {
		if errors.IsNotFound(err) {
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	ls := labelsFor(memcached.Name)
	size := memcached.Spec.Size

	// Deployment: create if missing, update if replicas or image drifted.
	found := &appsv1.Deployment{}
	err := r.Get(ctx, types.NamespacedName{Name: memcached.Name, Namespace: memcached.Namespace}, found)
	if err != nil && errors.IsNotFound(err) {
		dep := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: memcached.Name, Namespace: memcached.Namespace},
			Spec: appsv1.DeploymentSpec{
				Replicas: &size,
				Selector: &metav1.LabelSelector{MatchLabels: ls},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: ls},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{
						Name:  "memcached",
						Image: "memcached:1.4.36",
						Ports: []corev1.ContainerPort{{ContainerPort: 11211, Name: "memcached"}},
					}}},
				},
			},
		}
		if err := ctrl.SetControllerReference(memcached, dep, r.Scheme); err != nil {
			return ctrl.Result{}, err
		}
		if err := r.Create(ctx, dep); err != nil {
			return ctrl.Result{}, err
		}
		found = dep
	} else if err != nil {
		return ctrl.Result{}, err
	} else if found.Spec.Replicas == nil || *found.Spec.Replicas != size ||
		len(found.Spec.Template.Spec.Containers) != 1 || found.Spec.Template.Spec.Containers[0].Image != "memcached:1.4.36" {
		found.Spec.Replicas = &size
		if len(found.Spec.Template.Spec.Containers) == 1 {
			found.Spec.Template.Spec.Containers[0].Image = "memcached:1.4.36"
		}
		if err := r.Update(ctx, found); err != nil {
			return ctrl.Result{}, err
		}
	}

	// Service: create if missing.
	svc := &corev1.Service{}
	err = r.Get(ctx, types.NamespacedName{Name: memcached.Name, Namespace: memcached.Namespace}, svc)
	if err != nil && errors.IsNotFound(err) {
		svc = &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: memcached.Name, Namespace: memcached.Namespace},
			Spec: corev1.ServiceSpec{
				Selector: ls,
				Ports:    []corev1.ServicePort{{Name: "memcached", Port: 11211, TargetPort: intstr.FromInt32(11211)}},
			},
		}
		if err := ctrl.SetControllerReference(memcached, svc, r.Scheme); err != nil {
			return ctrl.Result{}, err
		}
		if err := r.Create(ctx, svc); err != nil {
			return ctrl.Result{}, err
		}
	} else if err != nil {
		return ctrl.Result{}, err
	}

	// Status: sorted pod names, readyReplicas, Ready condition.
	podList := &corev1.PodList{}
	if err := r.List(ctx, podList, client.InNamespace(memcached.Namespace), client.MatchingLabels(ls)); err != nil {
		return ctrl.Result{}, err
	}
	podNames := []string{}
	for _, pod := range podList.Items {
		podNames = append(podNames, pod.Name)
	}
	sort.Strings(podNames)
	ready := found.Status.ReadyReplicas
	status := memcached.Status.DeepCopyObjectStatus()
	status.Nodes = podNames
	status.ReadyReplicas = ready
	cond := metav1.Condition{Type: "Ready", Status: metav1.ConditionFalse, Reason: "NotReady",
		Message: fmt.Sprintf("%d/%d pods ready", ready, size), ObservedGeneration: memcached.Generation}
	if ready == size {
		cond.Status, cond.Reason = metav1.ConditionTrue, "Ready"
	}
	meta.SetStatusCondition(&status.Conditions, cond)
	if !slices.Equal(memcached.Status.Nodes, status.Nodes) || !equality.Semantic.DeepEqual(memcached.Status, status) {
		memcached.Status = status
		if err := r.Status().Update(ctx, memcached); err != nil {
			return ctrl.Result{}, err
		}
	}
	return ctrl.Result{}, nil
}

func (s MemcachedStatus) DeepCopyObjectStatus() MemcachedStatus {
	m := Memcached{Status: s}
	return m.DeepCopy().Status
}

func (r *MemcachedReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&Memcached{}).
		Owns(&appsv1.Deployment{}).
		Owns(&corev1.Service{}).
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
			if o.GetLabels()["app"] != "memcached" || o.GetLabels()["memcached_cr"] == "" {
				return nil
			}
			return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: o.GetLabels()["memcached_cr"]}}}
		})).
		Complete(r)
}

func main() {
	var namespace string
	flag.StringVar(&namespace, "namespace", "", "namespace to watch (default: all)")
	opts := zap.Options{}
	opts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))

	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = addKnownTypes(scheme)
	mgrOpts := ctrl.Options{Scheme: scheme, Metrics: server.Options{BindAddress: "0"}, HealthProbeBindAddress: "0"}
	if namespace != "" {
		mgrOpts.Cache = cache.Options{DefaultNamespaces: map[string]cache.Config{namespace: {}}}
	}
	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), mgrOpts)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := (&MemcachedReconciler{Client: mgr.GetClient(), Scheme: mgr.GetScheme()}).SetupWithManager(mgr); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
