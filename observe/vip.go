package observe

import (
	"context"
	"sync"

	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/inventory"
	"github.com/mastershrink/mastershrink/plan"
	"github.com/mastershrink/mastershrink/vip"
)

// gatherVRRP reads keepalived on the masters, etcd and LB hosts that answered: a VIP in front
// of the apiservers lives on the LB hosts or on the masters, where a leaving one may hold it.
// Workers are not read, so a large cluster pays nothing for it.
func gatherVRRP(ctx context.Context, c *Cluster, reachable []string, f *plan.Facts) {
	var names []string
	for _, name := range reachable {
		if ih, ok := c.Inv.Host(name); ok && (ih.Has(inventory.RoleMaster) || ih.Has(inventory.RoleEtcd) || ih.Has(inventory.RoleLB)) {
			names = append(names, name)
		}
	}
	var mu sync.Mutex
	host.ForEach(ctx, names, c.opts.Concurrency, func(ctx context.Context, name string) error {
		h, err := c.Host(ctx, name)
		if err != nil {
			return err
		}
		o, found, err := vip.Observe(ctx, h, vip.DefaultConfig, vip.DefaultUnit)
		if err != nil {
			// Not a failure of the whole observation: the planner refuses to move a VIP it
			// could not read, and warns of a staying one.
			o.Error = err.Error()
		}
		if found {
			mu.Lock()
			if f.VRRP == nil {
				f.VRRP = map[string]vip.Observed{}
			}
			f.VRRP[name] = o
			mu.Unlock()
		}
		return nil
	})
}
