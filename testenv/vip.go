package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// VIPAddress is the keepalived VIP of a lab made with Options.VIP.
const VIPAddress = "10.88.0.100"

// vipFront is the VIP's address and port: the proxy every master runs listens on every
// address (seed003's kube-nginx on *:8443), so the VIP's holder answers there.
func (l *Lab) vipFront() string {
	lay, _ := LookupLayout(l.Layout)
	_, port, _ := strings.Cut(lay.Paths.NginxListen, ":")
	return VIPAddress + ":" + port
}

// keepalivedConf is a master's keepalived.conf as the keepalived+proxy-on-masters guides write
// it: unicast VRRP between the masters (bridges and clouds often drop multicast), every one
// starting as BACKUP, and the priority rising with the master's number, so the VIP starts on
// the last master: the one a shrink removes first.
func (l *Lab) keepalivedConf(m Machine) string {
	masters := l.masters()
	prio := 0
	var peers strings.Builder
	for i, o := range masters {
		if o.Name == m.Name {
			prio = 100 + 10*i
			continue
		}
		fmt.Fprintf(&peers, "        %s\n", o.Address)
	}
	return fmt.Sprintf(`! keepalived for the apiserver VIP (lab)
global_defs {
    router_id %s
}

vrrp_instance apiserver {
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority %d
    advert_int 1
    authentication {
        auth_type PASS
        auth_pass labvrrp1
    }
    unicast_src_ip %s
    unicast_peer {
%s    }
    virtual_ipaddress {
        %s/24 dev eth0
    }
}
`, m.Name, prio, m.Address, peers.String(), VIPAddress)
}

// AddVIP runs keepalived on every master for VIPAddress, as the keepalived-on-masters guides
// set it up, waits until the last master holds the VIP, and returns the path of a kubeconfig
// that reaches the API through it. The apiserver certificate does not name the VIP, so the
// kubeconfig says which name to verify (tls-server-name), as an operator adding a VIP to a
// running cluster does until the certificate is re-signed.
func (l *Lab) AddVIP(ctx context.Context) (string, error) {
	masters := l.masters()
	for _, m := range masters {
		conf := filepath.Join(m.Root, "etc/keepalived/keepalived.conf")
		if err := os.MkdirAll(filepath.Dir(conf), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(conf, []byte(l.keepalivedConf(m)), 0o644); err != nil {
			return "", err
		}
		if out, err := l.Exec(ctx, m.Name, "systemctl", "enable", "--now", "keepalived.service"); err != nil {
			return "", fmt.Errorf("start keepalived on %s: %v: %s", m.Name, err, out)
		}
	}
	last := masters[len(masters)-1]
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := l.Exec(ctx, last.Name, "ip", "-o", "addr", "show", "dev", "eth0")
		if err == nil && strings.Contains(string(out), " "+VIPAddress+"/") {
			break
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("lab %s: %s does not hold the VIP %s after 30s: %s", l.Name, last.Name, VIPAddress, out)
		}
		time.Sleep(500 * time.Millisecond)
	}
	read := func(name string) ([]byte, error) { return os.ReadFile(filepath.Join(l.PKIDir, name)) }
	ca, err := read("ca.pem")
	if err != nil {
		return "", err
	}
	cert, err := read("admin.pem")
	if err != nil {
		return "", err
	}
	key, err := read("admin-key.pem")
	if err != nil {
		return "", err
	}
	kc := string(kubeconfig("https://"+l.vipFront(), "admin", ca, cert, key))
	kc = strings.Replace(kc, "    server: ", "    tls-server-name: kubernetes\n    server: ", 1)
	path := filepath.Join(l.OutDir, "vip.kubeconfig")
	if err := os.WriteFile(path, []byte(kc), 0o600); err != nil {
		return "", err
	}
	return path, nil
}
