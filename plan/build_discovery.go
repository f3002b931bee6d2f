package plan

import (
	"fmt"
	"maps"
	"slices"
)

// unitMismatches refuses a plan where the inventory names a unit that does not run on a host
// that runs its program under another unit: the preset guessed wrong, and planning around
// it would leave a survivor's flags unrewritten or a removed member's etcd running.
func (b *builder) unitMismatches() {
	for _, name := range slices.Sorted(maps.Keys(b.f.Units)) {
		if b.offline[name] {
			continue
		}
		for _, m := range b.f.Units[name].Mismatches {
			state := "which systemd does not know there"
			if m.State != "not-found" {
				state = "which is " + m.State + " there"
			}
			b.refuse("unit-mismatch", fmt.Sprintf("%s: the inventory's %s is %s, %s, but %s runs there as %s",
				name, m.Field, m.Inventory, state, m.Program, m.Found),
				fmt.Sprintf("set %s: %s for %s in the inventory (or under paths: for every host), then plan again", m.Field, m.Found, name))
		}
	}
}
