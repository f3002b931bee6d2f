package apiserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// ErrLeaseNotOnSurvivor means a leader lease is held, unexpired, by a host that is leaving.
var ErrLeaseNotOnSurvivor = errors.New("leader lease held by a leaving host")

// ErrEndpointsNotSurvivors means the kubernetes Service still lists other addresses.
var ErrEndpointsNotSurvivors = errors.New("kubernetes endpoints are not the survivors")

// LeaderLeases are the kube-system leases of the controller-manager and scheduler leaders.
var LeaderLeases = []string{"kube-controller-manager", "kube-scheduler"}

// identityLabel marks kube-apiserver identity leases; the hostname label says whose.
const (
	identityLabel = "apiserver.kubernetes.io/identity"
	hostnameLabel = "kubernetes.io/hostname"
)

// Lease is a leader or identity lease as observed.
type Lease struct {
	Name   string `json:"name"`
	Holder string `json:"holder"`
	// Hostname is the holder's host: the part before '_' of a leader's holderIdentity, or
	// the kubernetes.io/hostname label of an apiserver identity lease.
	Hostname  string    `json:"hostname"`
	RenewTime time.Time `json:"renew_time"`
	Expired   bool      `json:"expired"`
}

func leaseFrom(l coordinationv1.Lease, now time.Time) Lease {
	out := Lease{Name: l.Name}
	if l.Spec.HolderIdentity != nil {
		out.Holder = *l.Spec.HolderIdentity
		out.Hostname, _, _ = strings.Cut(out.Holder, "_")
	}
	if h := l.Labels[hostnameLabel]; h != "" {
		out.Hostname = h
	}
	if l.Spec.RenewTime != nil {
		out.RenewTime = l.Spec.RenewTime.Time.UTC()
	}
	dur := time.Duration(0)
	if l.Spec.LeaseDurationSeconds != nil {
		dur = time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second
	}
	out.Expired = out.Holder == "" || out.RenewTime.IsZero() || now.After(out.RenewTime.Add(dur))
	return out
}

// LeaderLeaseHolders reads the controller-manager and scheduler leader leases. A lease that
// does not exist is left out.
func LeaderLeaseHolders(ctx context.Context, kube kubernetes.Interface) ([]Lease, error) {
	var out []Lease
	now := time.Now()
	for _, name := range LeaderLeases {
		l, err := kube.CoordinationV1().Leases(metav1.NamespaceSystem).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return nil, fmt.Errorf("get lease kube-system/%s: %w", name, err)
		}
		out = append(out, leaseFrom(*l, now))
	}
	return out, nil
}

// CheckLeaderLeases is the "holds or can take" check: each leader lease is held by a
// survivor, or has expired so that a survivor can take it.
func CheckLeaderLeases(leases []Lease, survivors []string) error {
	var errs []error
	for _, l := range leases {
		if l.Expired || isSurvivor(l.Hostname, survivors) {
			continue
		}
		errs = append(errs, fmt.Errorf("lease kube-system/%s held by %s (renewed %s): %w", l.Name, l.Holder, l.RenewTime.Format(time.RFC3339), ErrLeaseNotOnSurvivor))
	}
	return errors.Join(errs...)
}

// WaitLeadersOnSurvivors waits until a survivor holds, unexpired, each leader lease (after
// the leaving masters stopped, the lease expires and a survivor takes it).
func WaitLeadersOnSurvivors(ctx context.Context, kube kubernetes.Interface, survivors []string, deadline time.Duration, progress io.Writer) error {
	hb := startHeartbeat(progress, "waiting for the leader leases to move to "+strings.Join(survivors, ","))
	defer hb.stop()
	return poll(ctx, deadline, func(ctx context.Context) (bool, error) {
		leases, err := LeaderLeaseHolders(ctx, kube)
		if err != nil {
			return false, err
		}
		var pending []string
		for _, l := range leases {
			if l.Expired || !isSurvivor(l.Hostname, survivors) {
				pending = append(pending, fmt.Sprintf("%s held by %q (expired %v)", l.Name, l.Holder, l.Expired))
			}
		}
		if len(pending) > 0 {
			return false, fmt.Errorf("%w: %s", ErrLeaseNotOnSurvivor, strings.Join(pending, "; "))
		}
		return true, nil
	})
}

// APIServerLeases reads the kube-apiserver identity leases. A leaving apiserver's lease
// stays until it expires (an hour by default) and the lease GC removes it; it is harmless.
func APIServerLeases(ctx context.Context, kube kubernetes.Interface) ([]Lease, error) {
	list, err := kube.CoordinationV1().Leases(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{LabelSelector: identityLabel + "=kube-apiserver"})
	if err != nil {
		return nil, fmt.Errorf("list apiserver identity leases: %w", err)
	}
	now := time.Now()
	var out []Lease
	for _, l := range list.Items {
		out = append(out, leaseFrom(l, now))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// LiveAPIServers returns the hostnames whose apiserver identity lease is unexpired.
func LiveAPIServers(leases []Lease) []string {
	var out []string
	for _, l := range leases {
		if !l.Expired {
			out = append(out, l.Hostname)
		}
	}
	sort.Strings(out)
	return out
}

// WaitEndpointSlice waits until the default/kubernetes EndpointSlices list exactly the
// survivors' addresses (the lease endpoint reconciler drops a stopped apiserver once its
// master lease expires).
func WaitEndpointSlice(ctx context.Context, kube kubernetes.Interface, survivors []string, deadline time.Duration) error {
	want := append([]string(nil), survivors...)
	sort.Strings(want)
	return poll(ctx, deadline, func(ctx context.Context) (bool, error) {
		list, err := kube.DiscoveryV1().EndpointSlices(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=kubernetes"})
		if err != nil {
			return false, fmt.Errorf("list default/kubernetes endpointslices: %w", err)
		}
		got := EndpointSliceAddresses(list.Items)
		if strings.Join(got, ",") != strings.Join(want, ",") {
			return false, fmt.Errorf("%w: lists %s, want %s", ErrEndpointsNotSurvivors, strings.Join(got, ","), strings.Join(want, ","))
		}
		return true, nil
	})
}

// EndpointSliceAddresses are the ready addresses of the slices, sorted and unique.
func EndpointSliceAddresses(slices []discoveryv1.EndpointSlice) []string {
	seen := map[string]bool{}
	for _, s := range slices {
		for _, e := range s.Endpoints {
			if e.Conditions.Ready != nil && !*e.Conditions.Ready {
				continue
			}
			for _, a := range e.Addresses {
				seen[a] = true
			}
		}
	}
	out := make([]string, 0, len(seen))
	for a := range seen {
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}

func isSurvivor(hostname string, survivors []string) bool {
	for _, s := range survivors {
		if strings.EqualFold(hostname, s) {
			return true
		}
	}
	return false
}

// poll calls check every 2 s until it returns true, the deadline passes (its last error is
// returned), or ctx ends.
func poll(ctx context.Context, deadline time.Duration, check func(context.Context) (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	var last error
	for {
		ok, err := check(ctx)
		if ok {
			return nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			if last == nil {
				last = ctx.Err()
			}
			return fmt.Errorf("after %s: %w", deadline, last)
		case <-t.C:
		}
	}
}
