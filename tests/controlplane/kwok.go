package main

import (
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"io"
	"os"
	"strings"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"

	nodefast "sigs.k8s.io/kwok/kustomize/stage/node/fast"
	nodeheartbeat "sigs.k8s.io/kwok/kustomize/stage/node/heartbeat-with-lease"
	podfast "sigs.k8s.io/kwok/kustomize/stage/pod/fast"
	"sigs.k8s.io/kwok/pkg/apis/internalversion"
	"sigs.k8s.io/kwok/pkg/client/clientset/versioned"
	"sigs.k8s.io/kwok/pkg/config"
	"sigs.k8s.io/kwok/pkg/kwok/controllers"
	"sigs.k8s.io/kwok/pkg/log"
	kwokclient "sigs.k8s.io/kwok/pkg/utils/client"
)

// kwokNodeAnnotation marks the nodes that kwok manages (all of ours).
const kwokNodeAnnotation = "kwok.x-k8s.io/node"

//go:embed stages/volume.yaml
var volumeStages string

// stages returns kwok's stock "fast" node and pod stages (node init, lease
// heartbeat, pod ready, job pod complete, pod delete) plus the volume stages
// that act as a dynamic provisioner for the "standard" storage class.
func stages() (map[internalversion.StageResourceRef][]*internalversion.Stage, error) {
	docs := []string{
		nodefast.DefaultNodeInit,
		nodeheartbeat.DefaultNodeHeartbeatWithLease,
		podfast.DefaultPodReady,
		podfast.DefaultPodComplete,
		podfast.DefaultPodDelete,
	}
	for _, d := range strings.Split(volumeStages, "\n---\n") {
		if strings.Contains(d, "kind: Stage") {
			docs = append(docs, d)
		}
	}
	out := map[internalversion.StageResourceRef][]*internalversion.Stage{}
	for _, d := range docs {
		s, err := config.UnmarshalWithType[*internalversion.Stage](d)
		if err != nil {
			return nil, err
		}
		if s.Name == "pod-complete" {
			// Job pods "run" for 1-2 s before they succeed, instead of at once.
			s.Spec.Delay = &internalversion.StageDelay{
				DurationMilliseconds:       ptr.To[int64](1000),
				JitterDurationMilliseconds: ptr.To[int64](2000),
			}
		}
		out[s.Spec.ResourceRef] = append(out[s.Spec.ResourceRef], s)
	}
	return out, nil
}

// startKwok runs kwok's controller (the fake kubelets) in this process, the
// way the kwok binary's root command wires it, with stages from stages().
func startKwok(ctx context.Context, kubeconfig string, verbose bool) error {
	level := log.LevelError
	var w io.Writer = notFoundFilter{os.Stderr}
	if verbose {
		level, w = log.LevelInfo, os.Stderr
	}
	ctx = log.NewContext(ctx, log.NewLogger(w, level))

	localStages, err := stages()
	if err != nil {
		return fmt.Errorf("stages: %w", err)
	}
	id, err := controllers.Identity()
	if err != nil {
		return err
	}
	cs, err := kwokclient.NewClientset("", kubeconfig)
	if err != nil {
		return err
	}
	restConfig, err := cs.ToRESTConfig()
	if err != nil {
		return err
	}
	dynamicClient, err := cs.ToDynamicClient()
	if err != nil {
		return err
	}
	restMapper, err := cs.ToRESTMapper()
	if err != nil {
		return err
	}
	restClient, err := rest.RESTClientFor(restConfig)
	if err != nil {
		return err
	}
	typedClient, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return err
	}
	typedKwokClient, err := versioned.NewForConfig(restConfig)
	if err != nil {
		return err
	}
	ctr, err := controllers.NewController(controllers.Config{
		Clock:                             clock.RealClock{},
		DynamicClient:                     dynamicClient,
		RESTClient:                        restClient,
		RESTMapper:                        restMapper,
		ImpersonatingDynamicClient:        cs.ToImpersonatingDynamicClient(),
		ImpersonatingTypedClient:          cs.ToImpersonatingTypedClient(),
		TypedClient:                       typedClient,
		TypedKwokClient:                   typedKwokClient,
		ManageNodesWithAnnotationSelector: kwokNodeAnnotation + "=fake",
		CIDR:                              "10.0.0.0/16",
		NodeIP:                            "10.240.255.254",
		PodPlayStageParallelism:           8,
		NodePlayStageParallelism:          4,
		NodeLeaseParallelism:              4,
		NodeLeaseDurationSeconds:          40,
		PodsOnNodeSyncParallelism:         2,
		EnablePodsOnNodeSyncListPager:     true,
		LocalStages:                       localStages,
		ID:                                id,
	})
	if err != nil {
		return err
	}
	return ctr.Start(ctx)
}

// notFoundFilter drops kwok's log records about objects that were deleted
// while a stage was being played (a benign race, e.g. pod-delete after GC).
type notFoundFilter struct{ w io.Writer }

func (f notFoundFilter) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte("not found")) {
		return len(p), nil
	}
	return f.w.Write(p)
}
