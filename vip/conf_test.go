package vip

import (
	"reflect"
	"strings"
	"testing"
)

const masters = `! Configuration File for keepalived
global_defs {
   router_id LVS_DEVEL
}
vrrp_script check_apiserver {
    script "/etc/keepalived/check.sh"
    interval 3
}
vrrp_instance VI_1 {
    state MASTER          # m3 starts as the holder
    interface eth0
    virtual_router_id 51
    priority 150
    advert_int 1
    authentication {
        auth_type PASS
        auth_pass s3cret
    }
    unicast_src_ip 10.88.0.13
    unicast_peer {
        10.88.0.11
        10.88.0.12
    }
    virtual_ipaddress {
        10.88.0.100/24 dev eth0 label eth0:vip
    }
    track_script {
        check_apiserver
    }
}
`

func TestParse(t *testing.T) {
	c, err := Parse(masters)
	if err != nil {
		t.Fatal(err)
	}
	want := []Instance{{Name: "VI_1", State: "MASTER", Priority: 150, RouterID: 51, VIPs: []string{"10.88.0.100"},
		Source: "10.88.0.13", Peers: []string{"10.88.0.11", "10.88.0.12"}}}
	if !reflect.DeepEqual(c.Instances, want) {
		t.Fatalf("got %+v\nwant %+v", c.Instances, want)
	}
	if got := c.VIPs(); !reflect.DeepEqual(got, []string{"10.88.0.100"}) {
		t.Fatalf("VIPs() = %v", got)
	}
}

func TestParseOneLineBlocksAndIncludes(t *testing.T) {
	c, err := Parse("include /etc/keepalived/conf.d/*.conf\nvrrp_instance A { virtual_ipaddress { 192.0.2.1 192.0.2.2/32 }\nunicast_peer { 192.0.2.10 192.0.2.11 } }\n")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.Includes, []string{"/etc/keepalived/conf.d/*.conf"}) {
		t.Errorf("includes %v", c.Includes)
	}
	// One line holds both addresses: only its first word is the address (the others are its
	// options in keepalived's grammar), so one VIP per line.
	if got := c.Instances[0].VIPs; !reflect.DeepEqual(got, []string{"192.0.2.1"}) {
		t.Errorf("VIPs %v", got)
	}
	if got := c.Instances[0].Peers; !reflect.DeepEqual(got, []string{"192.0.2.10", "192.0.2.11"}) {
		t.Errorf("peers %v", got)
	}
}

func TestParseRefuses(t *testing.T) {
	for name, text := range map[string]string{
		"unclosed":  "vrrp_instance A {\n virtual_ipaddress {\n 10.0.0.1\n }\n",
		"extra }":   "}\n",
		"no VIP":    "vrrp_instance A {\n state BACKUP\n}\n",
		"not an IP": "vrrp_instance A {\n virtual_ipaddress {\n apiserver.example\n }\n}\n",
	} {
		if _, err := Parse(text); err == nil {
			t.Errorf("%s: parsed without an error", name)
		}
	}
}

func TestDropPeers(t *testing.T) {
	got, err := DropPeers(masters, []string{"10.88.0.12", "10.88.0.13"})
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Replace(masters, "        10.88.0.12\n", "", 1)
	if got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	// Peers sharing a line with others or with the braces lose only their word.
	in := "vrrp_instance A {\n unicast_peer { 10.0.0.2 10.0.0.3 }\n unicast_peer {\n  10.0.0.4  10.0.0.5\n }\n virtual_ipaddress {\n 10.0.0.100\n }\n}\n"
	got, err = DropPeers(in, []string{"10.0.0.2", "10.0.0.5"})
	if err != nil {
		t.Fatal(err)
	}
	want = "vrrp_instance A {\n unicast_peer { 10.0.0.3 }\n unicast_peer {\n  10.0.0.4  \n }\n virtual_ipaddress {\n 10.0.0.100\n }\n}\n"
	if got != want {
		t.Fatalf("got\n%q\nwant\n%q", got, want)
	}
	c, _ := Parse(got)
	if !reflect.DeepEqual(c.Instances[0].Peers, []string{"10.0.0.3", "10.0.0.4"}) {
		t.Errorf("peers after %v", c.Instances[0].Peers)
	}
	// A VIP equal to a dropped address is not a peer and stays.
	got, _ = DropPeers(in, []string{"10.0.0.100"})
	if got != in {
		t.Errorf("a virtual_ipaddress was touched:\n%s", got)
	}
}

// With no peer left the instance goes back to plain VRRP: keepalived's config test fails on a
// unicast_src_ip or an empty unicast_peer block without peers.
func TestDropPeersAll(t *testing.T) {
	got, err := DropPeers(masters, []string{"10.88.0.11", "10.88.0.12"})
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Replace(masters, "    unicast_src_ip 10.88.0.13\n    unicast_peer {\n        10.88.0.11\n        10.88.0.12\n    }\n", "", 1)
	if got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	c, err := Parse(got)
	if err != nil || len(c.Instances[0].Peers) != 0 || c.Instances[0].Source != "" || len(c.Instances[0].VIPs) != 1 {
		t.Fatalf("after: %+v, %v", c, err)
	}
	// A block sharing its line with other settings is not cut blind.
	if _, err := DropPeers("vrrp_instance A { unicast_peer { 10.0.0.2 } virtual_ipaddress {\n10.0.0.100\n}\n}\n", []string{"10.0.0.2"}); err == nil {
		t.Errorf("a shared line was cut")
	}
}

func TestHeld(t *testing.T) {
	out := `1: lo    inet 127.0.0.1/8 scope host lo\       valid_lft forever preferred_lft forever
2: eth0    inet 10.88.0.13/24 brd 10.88.0.255 scope global eth0\       valid_lft forever preferred_lft forever
2: eth0    inet 10.88.0.100/24 scope global secondary eth0:vip\       valid_lft forever preferred_lft forever
2: eth0    inet6 fe80::1/64 scope link \       valid_lft forever preferred_lft forever`
	want := []string{"10.88.0.100", "10.88.0.13", "127.0.0.1", "fe80::1"}
	if got := Held(out); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v want %v", got, want)
	}
}
