package testenv

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/mastershrink/mastershrink/inventory"
)

// The inventory a lab writes loads, and gives every host exactly the paths the lab installed
// at: the preset, plus the node proxy a layout adds where its preset has none.
func TestLabInventoryMatchesLayout(t *testing.T) {
	for _, name := range LayoutNames() {
		t.Run(name, func(t *testing.T) {
			o := Options{Layout: name, OutDir: t.TempDir()}
			if err := o.setDefaults(); err != nil {
				t.Fatal(err)
			}
			l := plan(o)
			file := filepath.Join(o.OutDir, "inventory.yaml")
			if err := os.WriteFile(file, l.inventoryYAML(), 0o644); err != nil {
				t.Fatal(err)
			}
			// Load checks the kubeconfig and key files exist.
			for _, f := range []string{"admin.kubeconfig", "id_ed25519", "known_hosts"} {
				if err := os.WriteFile(filepath.Join(o.OutDir, f), nil, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			inv, err := inventory.Load(file)
			if err != nil {
				t.Fatalf("%v\n%s", err, l.inventoryYAML())
			}
			lay, _ := LookupLayout(name)
			for _, h := range inv.Hosts {
				if want := lay.Paths.ForHost(h.Name); h.Paths != want {
					t.Errorf("%s: inventory paths %+v\nlab installs at %+v", h.Name, h.Paths, want)
				}
			}
		})
	}
}
