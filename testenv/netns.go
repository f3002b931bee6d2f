package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// DialerIn returns a dial function whose sockets are made inside the network namespace at
// nsPath (for example /run/netns/mslab-w1), so in-process clients reach addresses that exist
// only there. Each dial runs on its own OS thread, which is switched into the namespace and
// then thrown away, so no other goroutine ever runs in it.
func DialerIn(nsPath string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		type result struct {
			c   net.Conn
			err error
		}
		ch := make(chan result, 1)
		go func() {
			// Never unlocked: the goroutine exits locked, so the runtime ends the thread
			// instead of reusing it in the wrong namespace.
			runtime.LockOSThread()
			fd, err := unix.Open(nsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				ch <- result{nil, fmt.Errorf("open netns %s: %w", nsPath, err)}
				return
			}
			err = unix.Setns(fd, unix.CLONE_NEWNET)
			unix.Close(fd)
			if err != nil {
				ch <- result{nil, fmt.Errorf("enter netns %s: %w", nsPath, err)}
				return
			}
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			ch <- result{c, err}
		}()
		select {
		case r := <-ch:
			return r.c, r.err
		case <-ctx.Done():
			go func() {
				if r := <-ch; r.c != nil {
					r.c.Close()
				}
			}()
			return nil, ctx.Err()
		}
	}
}

func netnsPath(name string) string { return "/run/netns/" + name }

func ip(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// deleteNetns removes a named network namespace the way `ip netns del` does.
func deleteNetns(name string) error {
	p := netnsPath(name)
	if _, err := os.Stat(p); os.IsNotExist(err) {
		return nil
	}
	if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && err != unix.EINVAL && err != unix.ENOENT {
		return fmt.Errorf("unmount netns %s: %w", name, err)
	}
	if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("remove netns %s: %w", name, err)
	}
	return nil
}

// labNetnsNames lists the named namespaces belonging to lab name: the lab's own and its machines'.
func labNetnsNames(name string) []string {
	entries, _ := os.ReadDir("/run/netns")
	var out []string
	for _, e := range entries {
		n := e.Name()
		if n == name || (strings.HasPrefix(n, name+"-") && isMachineName(strings.TrimPrefix(n, name+"-"))) {
			out = append(out, n)
		}
	}
	return out
}

// isMachineName: masters m1..m9, workers w1..w9, LB hosts lb1..lb9.
func isMachineName(s string) bool {
	for _, prefix := range []string{"m", "w", "lb"} {
		if n, ok := strings.CutPrefix(s, prefix); ok && len(n) == 1 && n[0] >= '1' && n[0] <= '9' {
			return true
		}
	}
	return false
}
