package nodes_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/host/hosttest"
	"github.com/mastershrink/mastershrink/nodes"
)

// reply is what a scripted host answers to a command.
type reply struct {
	out  string
	exit int
	hang bool // until the command's context ends, like umount on a dead NFS server
	real bool // run it on this machine
}

// scripted is a fake host whose commands answer from a script (ran lists them): it shows
// what cleanup would run on machines this one cannot be (IPVS, docker, a hung NFS). exists
// are the folders its Stat finds.
func scripted(name string, exists []string, script func(cmd string) reply) *hosttest.Host {
	h := hosttest.New(name)
	for _, p := range exists {
		h.SetFile(p+"/.exists", "")
	}
	h.RunContext = func(ctx context.Context, cmd string) (host.Result, error) {
		r := script(cmd)
		switch {
		case r.real:
			return host.NewLocal(name).Run(ctx, cmd)
		case r.hang:
			<-ctx.Done()
			return host.Result{ExitCode: -1}, fmt.Errorf("%s: command %q: %w", name, cmd, ctx.Err())
		case r.exit != 0:
			return host.Result{Stdout: []byte(r.out), ExitCode: r.exit}, &host.CmdError{Host: name, Cmd: cmd, ExitCode: r.exit}
		}
		return host.Result{Stdout: []byte(r.out)}, nil
	}
	return h
}

// onThisMachine is a fake host whose Stat and ReadFile look at this machine's files, for the
// commands it runs here.
type onThisMachine struct{ *hosttest.Host }

func (h onThisMachine) Stat(_ context.Context, p string) (host.FileInfo, error) {
	fi, err := os.Lstat(p)
	if err != nil {
		return host.FileInfo{}, err
	}
	return host.FileInfo{Path: p, Size: fi.Size(), Mode: fi.Mode(), IsDir: fi.IsDir()}, nil
}

func (h onThisMachine) ReadFile(_ context.Context, p string) ([]byte, error) { return os.ReadFile(p) }

// has answers "command -v NAME" for the tools named.
func has(cmd string, tools ...string) (reply, bool) {
	if !strings.HasPrefix(cmd, "command -v ") {
		return reply{}, false
	}
	for _, t := range tools {
		if strings.HasPrefix(cmd, "command -v "+t+" ") {
			return reply{}, true
		}
	}
	return reply{exit: 1}, true
}

func action(rep nodes.CleanupReport, step, target string) (nodes.Action, bool) {
	for _, a := range rep.Actions {
		if a.Step == step && a.Target == target {
			return a, true
		}
	}
	return nodes.Action{}, false
}

// A kube-proxy IPVS node with a site's own LVS service and links, and docker running a
// container that is not Kubernetes': cleanup takes only what Kubernetes made.
func TestCleanupTouchesOnlyKubernetes(t *testing.T) {
	const ipvsList = `IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  10.96.0.1:443 rr
  -> 10.0.0.11:6443               Masq    1      0          0
UDP  10.96.0.10:53 rr
TCP  10.0.0.5:30080 rr
TCP  [fd00::1]:443 rr
TCP  192.0.2.10:80 wlc
TCP  10.0.0.5:8080 rr
FWM  5 rr
`
	for _, tc := range []struct {
		name       string
		failDelete string // an ipvsadm -D that fails
	}{{"all deleted", ""}, {"one IPVS delete fails", "ipvsadm -D -u 10.96.0.10:53"}} {
		t.Run(tc.name, func(t *testing.T) {
			h := scripted("w4", nil, func(cmd string) reply {
				if r, ok := has(cmd, "docker", "ipvsadm"); ok {
					return r
				}
				switch {
				case cmd == "docker ps -aq --filter label=io.kubernetes.pod.name":
					return reply{out: "aaa111\nbbb222\n"}
				case strings.HasPrefix(cmd, "docker ps"):
					return reply{out: "aaa111\nbbb222\nsite-db\n"}
				case cmd == "ip -o link show":
					return reply{out: `1: lo: <LOOPBACK,UP> mtu 65536
2: eth0: <BROADCAST,UP> mtu 1500
3: docker0: <BROADCAST> mtu 1500
4: cni0: <BROADCAST,UP> mtu 1450
5: flannel.1: <BROADCAST,UP> mtu 1450
6: vxlan100: <BROADCAST,UP> mtu 1450
7: vxlan.calico: <BROADCAST,UP> mtu 1450
8: cali0123456789a@if3: <BROADCAST,UP> mtu 1450
9: calibration0: <BROADCAST> mtu 1500
10: kube-ipvs0: <BROADCAST,NOARP> mtu 1500
11: flannel-wg: <POINTOPOINT> mtu 1420
12: cilium_host@cilium_net: <BROADCAST> mtu 1500
13: vxlan0: <BROADCAST> mtu 1500
`}
				case cmd == "ipvsadm -Ln":
					return reply{out: ipvsList}
				case cmd == "ip -o addr show dev kube-ipvs0":
					return reply{out: "10: kube-ipvs0    inet 10.96.0.1/32 scope global kube-ipvs0\\       valid_lft forever\n" +
						"10: kube-ipvs0    inet 10.96.0.10/32 scope global kube-ipvs0\n10: kube-ipvs0    inet6 fd00::1/128 scope global\n"}
				case cmd == "ip -o addr show":
					return reply{out: "1: lo    inet 127.0.0.1/8 scope host lo\n2: eth0    inet 10.0.0.5/24 brd 10.0.0.255 scope global eth0\n"}
				case cmd == "cat /proc/self/mounts":
					return reply{out: "/dev/sda1 / ext4 rw 0 0\n"}
				case tc.failDelete != "" && cmd == tc.failDelete:
					return reply{exit: 2}
				case strings.HasPrefix(cmd, "pgrep"):
					return reply{exit: 1}
				}
				return reply{}
			})
			rep, err := nodes.Cleanup(context.Background(), h, nodes.CleanupOptions{CommandTimeout: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			commands := h.Commands()
			ranAny := func(pred func(string) bool) bool { return slices.ContainsFunc(commands, pred) }

			if !slices.Contains(commands, "docker rm -f aaa111 bbb222") || ranAny(func(c string) bool { return strings.Contains(c, "site-db") }) ||
				ranAny(func(c string) bool { return c == "docker ps -aq" }) {
				t.Errorf("docker: want only kubelet's containers removed; commands:\n%s", strings.Join(commands, "\n"))
			}

			var deleted []string
			for _, c := range commands {
				if l, ok := strings.CutPrefix(c, "ip link delete "); ok {
					deleted = append(deleted, l)
				}
			}
			want := []string{"cni0", "flannel.1", "vxlan.calico", "cali0123456789a", "kube-ipvs0", "flannel-wg", "cilium_host"}
			if tc.failDelete != "" {
				want = slices.DeleteFunc(want, func(l string) bool { return l == "kube-ipvs0" })
				if a, _ := action(rep, "delete-link", "kube-ipvs0"); a.Result != nodes.ResultSkipped || !strings.Contains(a.Error, "rerun") {
					t.Errorf("kube-ipvs0 with a service left: %+v", a)
				}
			}
			if !slices.Equal(deleted, want) {
				t.Errorf("links deleted %q, want %q", deleted, want)
			}

			if ranAny(func(c string) bool {
				return strings.Contains(c, "--clear") || strings.Contains(c, "-C") && strings.HasPrefix(c, "ipvsadm")
			}) {
				t.Errorf("the whole IPVS table was cleared; commands:\n%s", strings.Join(commands, "\n"))
			}
			var ipvsDeleted []string
			for _, c := range commands {
				if strings.HasPrefix(c, "ipvsadm -D ") {
					ipvsDeleted = append(ipvsDeleted, c)
				}
			}
			wantIPVS := []string{"ipvsadm -D -t 10.96.0.1:443", "ipvsadm -D -u 10.96.0.10:53", "ipvsadm -D -t 10.0.0.5:30080", "ipvsadm -D -t '[fd00::1]:443'"}
			if !slices.Equal(ipvsDeleted, wantIPVS) {
				t.Errorf("IPVS deletes %q, want %q", ipvsDeleted, wantIPVS)
			}
			// Services first, then the link whose addresses identified them.
			if i, j := slices.Index(commands, "ipvsadm -D -t 10.96.0.1:443"), slices.Index(commands, "ip link delete kube-ipvs0"); j >= 0 && j < i {
				t.Errorf("kube-ipvs0 deleted before its services")
			}
			other, _ := action(rep, "delete-ipvs-service", "3 other virtual services")
			if other.Result != nodes.ResultSkipped || !strings.Contains(other.Error, "TCP 192.0.2.10:80, TCP 10.0.0.5:8080, FWM 5") {
				t.Errorf("other IPVS services: %+v", other)
			}
		})
	}
}

// Every host command has a deadline: a hung one is killed and reported naming the command and
// the host, and the cleanup and the verification go on to the end.
func TestCleanupCommandDeadline(t *testing.T) {
	h := scripted("w7", nil, func(cmd string) reply {
		if r, ok := has(cmd, "docker"); ok {
			return r
		}
		switch {
		case strings.HasPrefix(cmd, "docker ps"): // a wedged dockerd
			return reply{hang: true}
		case cmd == "cat /proc/self/mounts":
			return reply{out: "nfs:/export /var/lib/kubelet/pods/p1/volumes/kubernetes.io~nfs/data nfs4 rw 0 0\n"}
		case strings.HasPrefix(cmd, "umount"): // a dead NFS server
			return reply{hang: true}
		case strings.HasPrefix(cmd, "pgrep"):
			return reply{exit: 1}
		}
		return reply{}
	})
	opts := nodes.CleanupOptions{CommandTimeout: 150 * time.Millisecond}
	start := time.Now()
	rep, err := nodes.Cleanup(context.Background(), h, opts)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("cleanup took %s with two hung commands and a 150ms deadline", d)
	}
	docker, _ := action(rep, "remove-containers", "docker")
	mp := "/var/lib/kubelet/pods/p1/volumes/kubernetes.io~nfs/data"
	umount, _ := action(rep, "unmount", mp)
	for what, a := range map[string]nodes.Action{"docker ps": docker, "umount": umount} {
		if !strings.Contains(a.Error, "timed out after 150ms") || !strings.Contains(a.Error, "w7") || !strings.Contains(a.Error, what) {
			t.Errorf("%s: %+v, want a timeout naming the command and the host", what, a)
		}
	}
	if umount.Result != nodes.ResultFailed {
		t.Errorf("umount timed out but reported %q", umount.Result)
	}
	// The steps after the hung ones still ran.
	if _, ok := action(rep, "delete-link", "ip -o link show"); !ok && !slices.Contains(h.Commands(), "ip -o link show") {
		t.Errorf("cleanup stopped after the timeouts; ran:\n%s", strings.Join(h.Commands(), "\n"))
	}

	v, err := nodes.Verify(context.Background(), h, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(v.Problems, func(p string) bool {
		return strings.HasPrefix(p, "containers docker:") && strings.Contains(p, "timed out after 150ms")
	}) {
		t.Errorf("verify problems %q lack the docker timeout", v.Problems)
	}
	if !slices.ContainsFunc(v.Leftovers, func(l nodes.Leftover) bool { return l.Check == "mount" && l.Item == mp }) {
		t.Errorf("verify leftovers %+v lack the NFS mount", v.Leftovers)
	}
}

// The backup holds private keys: written 0600 into a 0700 folder, and the report names the key
// files and warns, louder when the CA key is among them.
func TestCleanupBackupWarning(t *testing.T) {
	h := scripted("m3", []string{"/etc/kubernetes"}, func(cmd string) reply {
		if r, ok := has(cmd); ok {
			return r
		}
		switch {
		case strings.HasPrefix(cmd, "grep -rlE"):
			return reply{out: "/etc/kubernetes/ssl/ca-key.pem\n/etc/kubernetes/kubelet.kubeconfig\n/etc/kubernetes/ssl/kubelet-key.pem\n"}
		case strings.HasPrefix(cmd, "pgrep"), cmd == "ipvsadm -Ln":
			return reply{exit: 1}
		}
		return reply{}
	})
	now := func() time.Time { return time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC) }
	rep, err := nodes.Cleanup(context.Background(), h, nodes.CleanupOptions{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	want := "/var/backups/mastershrink/kube-node-20260304T050607Z.tar.gz"
	if rep.Backup != want {
		t.Fatalf("backup %q, want %q", rep.Backup, want)
	}
	backup := h.Commands()[slices.IndexFunc(h.Commands(), func(c string) bool { return strings.Contains(c, "tar -czf") })]
	for _, part := range []string{"umask 077", "[ -L /var/backups/mastershrink ]", "chmod 700 /var/backups/mastershrink", "chmod 600 " + want + ".part", "mv -f " + want + ".part " + want} {
		if !strings.Contains(backup, part) {
			t.Errorf("backup command lacks %q:\n%s", part, backup)
		}
	}
	if !slices.Equal(rep.BackupKeys, []string{"/etc/kubernetes/kubelet.kubeconfig", "/etc/kubernetes/ssl/ca-key.pem", "/etc/kubernetes/ssl/kubelet-key.pem"}) {
		t.Errorf("backup keys %q", rep.BackupKeys)
	}
	w := rep.BackupWarning
	for _, part := range []string{"m3:" + want, "0600", "3 files with private keys", "the CA key (/etc/kubernetes/ssl/ca-key.pem)", "last copy"} {
		if !strings.Contains(w, part) {
			t.Errorf("warning lacks %q: %s", part, w)
		}
	}
	if !slices.Contains(rep.Warnings(), w) {
		t.Errorf("Warnings() %q lack the backup's", rep.Warnings())
	}
}

// A symbolic link where the backup folder should be is refused, and then nothing is removed:
// there is no cleanup without a backup. The backup's commands run for real on this machine,
// under a scratch root; everything else is answered "absent", so nothing of this machine's
// own (links, chains, containers, units) is touched.
func TestCleanupBackupFolderSymlink(t *testing.T) {
	root := t.TempDir()
	h := onThisMachine{scripted("local", nil, func(cmd string) reply {
		switch {
		case strings.Contains(cmd, "tar -czf"), strings.HasPrefix(cmd, "grep -rlE"), strings.HasPrefix(cmd, "rm -rf --one-file-system "+root+"/"):
			return reply{real: true}
		case strings.HasPrefix(cmd, "command -v"), strings.HasPrefix(cmd, "pgrep"):
			return reply{exit: 1}
		}
		return reply{}
	})}
	opts := nodes.CleanupOptions{Root: root, Units: []string{}, Processes: []string{}, Shims: []string{}, Folders: []string{"/etc/kubernetes"}}
	conf := filepath.Join(root, "etc/kubernetes/kubelet.conf")
	if err := os.MkdirAll(filepath.Dir(conf), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, []byte("client-key-data: AAAA\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	elsewhere := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "var/backups"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(elsewhere, filepath.Join(root, "var/backups/mastershrink")); err != nil {
		t.Fatal(err)
	}
	_, err := nodes.Cleanup(context.Background(), h, opts)
	if err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("cleanup with a symlinked backup folder: %v", err)
	}
	if entries, _ := os.ReadDir(elsewhere); len(entries) > 0 {
		t.Errorf("the backup went through the link: %v", entries)
	}
	if _, err := os.Stat(conf); err != nil {
		t.Errorf("removed without a backup: %v", err)
	}

	// Without the link, into an existing 0755 folder: tightened to 0700, the tarball 0600,
	// and the kubeconfig with its embedded key named.
	if err := os.Remove(filepath.Join(root, "var/backups/mastershrink")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(root, "var/backups/mastershrink"), 0o755); err != nil {
		t.Fatal(err)
	}
	rep, err := nodes.Cleanup(context.Background(), h, opts)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(rep.Backup); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("backup %s: %v, mode %v", rep.Backup, err, fi.Mode().Perm())
	}
	if fi, _ := os.Stat(filepath.Dir(rep.Backup)); fi.Mode().Perm() != 0o700 {
		t.Errorf("an existing 0755 backup folder left %v", fi.Mode().Perm())
	}
	if !slices.Equal(rep.BackupKeys, []string{conf}) {
		t.Errorf("backup keys %q, want %q", rep.BackupKeys, conf)
	}
	if _, err := os.Stat(conf); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after the backup, /etc/kubernetes should be gone: %v", err)
	}
}
