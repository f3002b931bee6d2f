package inventory

import (
	"fmt"
	"net/netip"
	"strings"
)

// checkAddress accepts an IPv4 or IPv6 address or a DNS name.
func checkAddress(a string) error {
	if strings.HasPrefix(a, "[") {
		return fmt.Errorf("invalid address %q: write IPv6 addresses without brackets", a)
	}
	if strings.Contains(a, "://") {
		return fmt.Errorf("invalid address %q: a URL; write the host's bare IP address or DNS name (the ports are set in ssh.port and paths)", a)
	}
	if strings.Contains(a, ":") {
		if ip, err := netip.ParseAddr(a); err != nil || !ip.Is6() {
			return fmt.Errorf("invalid address %q: not an IPv6 address (and a port goes in ssh.port)", a)
		}
		return nil
	}
	if strings.Trim(a, "0123456789.") == "" {
		if _, err := netip.ParseAddr(a); err != nil {
			return fmt.Errorf("invalid IPv4 address %q (want four numbers from 0 to 255, e.g. 10.88.0.11)", a)
		}
		return nil
	}
	name := strings.TrimSuffix(a, ".")
	if len(name) > 253 {
		return fmt.Errorf("invalid address %q: DNS name longer than 253 characters", a)
	}
	for _, label := range strings.Split(name, ".") {
		if !validLabel(label) {
			return fmt.Errorf("invalid address %q: want an IPv4 or IPv6 address or a DNS name", a)
		}
	}
	return nil
}

func validLabel(l string) bool {
	if len(l) == 0 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	for _, c := range l {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// normalizeAddress makes equal addresses compare equal (2001:db8::1 and 2001:DB8:0::1).
func normalizeAddress(a string) string {
	if ip, err := netip.ParseAddr(a); err == nil {
		return ip.Unmap().String()
	}
	return strings.ToLower(strings.TrimSuffix(a, "."))
}
