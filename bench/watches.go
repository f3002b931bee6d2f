package bench

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/mastershrink/mastershrink/testenv"
)

// Watches are long-lived client-go watches through the workers' proxies, as kubelets and
// controllers hold them: they make each apiserver shutdown wait for its --request-timeout,
// and they count how often a stream broke and had to be opened again.
type Watches struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	breaks atomic.Int64
	open   int
}

// watchKinds are the resources each worker watches.
var watchKinds = []string{"pods", "nodes", "configmaps"}

// StartWatches opens len(watchKinds) watches from each worker through its local proxy.
func StartWatches(ctx context.Context, lab *testenv.Lab) (*Watches, error) {
	ctx, cancel := context.WithCancel(ctx)
	w := &Watches{cancel: cancel}
	for _, m := range lab.Machines {
		if !hasRole(m, "worker") {
			continue
		}
		cfg, err := lab.WorkerRESTConfig(m.Name)
		if err != nil {
			cancel()
			return nil, err
		}
		kube, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			cancel()
			return nil, err
		}
		for _, kind := range watchKinds {
			first, err := openWatch(ctx, kube, kind)
			if err != nil {
				cancel()
				w.wg.Wait()
				return nil, err
			}
			w.open++
			w.wg.Add(1)
			go w.keep(ctx, kube, kind, first)
		}
	}
	return w, nil
}

func hasRole(m testenv.Machine, role string) bool {
	for _, r := range m.Roles {
		if r == role {
			return true
		}
	}
	return false
}

func openWatch(ctx context.Context, kube kubernetes.Interface, kind string) (watch.Interface, error) {
	timeout := int64(3600)
	opts := metav1.ListOptions{TimeoutSeconds: &timeout, AllowWatchBookmarks: true}
	switch kind {
	case "pods":
		return kube.CoreV1().Pods("").Watch(ctx, opts)
	case "nodes":
		return kube.CoreV1().Nodes().Watch(ctx, opts)
	default:
		return kube.CoreV1().ConfigMaps("").Watch(ctx, opts)
	}
}

// keep drains a watch and opens it again whenever the stream ends before Stop.
func (w *Watches) keep(ctx context.Context, kube kubernetes.Interface, kind string, cur watch.Interface) {
	defer w.wg.Done()
	for {
		for ev := range cur.ResultChan() {
			if ev.Type == watch.Error {
				break
			}
		}
		cur.Stop()
		if ctx.Err() != nil {
			return
		}
		w.breaks.Add(1)
		for {
			next, err := openWatch(ctx, kube, kind)
			if err == nil {
				cur = next
				break
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
}

// Open is how many watches are held.
func (w *Watches) Open() int { return w.open }

// Stop closes the watches and returns how many times a stream broke.
func (w *Watches) Stop() int {
	w.cancel()
	w.wg.Wait()
	return int(w.breaks.Load())
}
