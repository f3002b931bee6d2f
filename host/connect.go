package host

import (
	"context"
	"fmt"

	"github.com/mastershrink/mastershrink/inventory"
)

// Connect reaches an inventory host: locally when its ssh.local is set, else over SSH
// with its effective SSH settings. dial may be nil.
func Connect(ctx context.Context, inv *inventory.Inventory, name string, dial DialFunc) (Host, error) {
	h, ok := inv.Host(name)
	if !ok {
		return nil, fmt.Errorf("host %q is not in inventory %s", name, inv.File)
	}
	if h.SSH.Local {
		return NewLocal(h.Name), nil
	}
	return Dial(ctx, SSHConfig{Name: h.Name, Address: h.Address, SSH: h.SSH, Dial: dial})
}
