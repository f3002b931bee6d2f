package testenv

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/inventory"
	"github.com/mastershrink/mastershrink/lb"
)

// TestLabScaleNodes: scale nodes join a lab's inventory as workers, answer SSH as the
// inventory says (key, known_hosts), serve the API through their own nginx, and leave no
// namespace behind.
func TestLabScaleNodes(t *testing.T) {
	RequireLab(t)
	lab := StartLab(t, Options{Name: "msscalet"})
	s := StartScaleNodes(t, lab, 5)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	inv, err := inventory.Load(lab.Inventory)
	if err != nil {
		t.Fatalf("the inventory with scale nodes does not load: %v", err)
	}
	for _, name := range s.Names {
		ih, ok := inv.Host(name)
		if !ok || !ih.Has(inventory.RoleWorker) || ih.Address != s.Addresses[name] || ih.Paths.NginxConfig != s.ConfPath(name) {
			t.Fatalf("inventory entry of %s: %+v", name, ih)
		}
	}
	workers := inv.HostsWithRole(inventory.RoleWorker)
	if len(workers) != 2+len(s.Names) {
		t.Errorf("%d workers in the inventory, want the lab's 2 and %d scale nodes", len(workers), len(s.Names))
	}

	ih, _ := inv.Host("n003")
	h, err := host.Connect(ctx, inv, "n003", lab.DialContext)
	if err != nil {
		t.Fatalf("SSH to n003: %v", err)
	}
	defer h.Close()
	res, err := h.Run(ctx, "ip -4 -o addr show dev eth0")
	if err != nil || !strings.Contains(string(res.Stdout), " "+s.Addresses["n003"]+"/") {
		t.Errorf("n003's SSH session is not in its own namespace: %q %v", res.Stdout, err)
	}
	if err := lb.Probe(ctx, h, ih.Paths.NginxListen, nil); err != nil {
		t.Errorf("no apiserver through n003's proxy: %v", err)
	}

	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, name := range s.Names {
		if _, err := os.Stat(netnsPath(s.netns(name))); !os.IsNotExist(err) {
			t.Errorf("namespace of %s left after Stop: %v", name, err)
		}
	}
}
