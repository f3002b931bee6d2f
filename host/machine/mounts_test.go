package machine

import "testing"

func TestUnescapeMount(t *testing.T) {
	for in, want := range map[string]string{
		`/var/lib/kubelet/pods/x/volumes`: `/var/lib/kubelet/pods/x/volumes`,
		`/mnt/with\040space`:              `/mnt/with space`,
		`/a\011tab\134back`:               "/a\ttab\\back",
		`/not\04x/an escape`:              `/not\04x/an escape`,
		`/trailing\04`:                    `/trailing\04`,
	} {
		if got := UnescapeMount(in); got != want {
			t.Errorf("UnescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}
