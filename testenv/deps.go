package testenv

import (
	"bufio"
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

//go:embed scripts/*.sh
var scripts embed.FS

// HostPackages are the Debian packages the host needs for the lab, by the command each provides.
var HostPackages = map[string]string{
	"systemd-nspawn": "systemd-container",
	"debootstrap":    "debootstrap",
	"ip":             "iproute2",
	"nsenter":        "util-linux",
	"mount":          "mount",
	"bash":           "bash",
	"go":             "golang (Go 1.26 toolchain, for the binary builds)",
}

// ErrMissingHostTools says the host lacks commands the lab needs; the message names the packages.
var ErrMissingHostTools = errors.New("missing host tools")

// CheckHost reports every host command the lab needs and cannot find, with its Debian package,
// and whether the kernel offers overlayfs and network namespaces.
func CheckHost() error {
	var missing []string
	for _, cmd := range []string{"systemd-nspawn", "debootstrap", "ip", "nsenter", "mount", "bash", "go"} {
		if _, err := exec.LookPath(cmd); err != nil {
			missing = append(missing, fmt.Sprintf("%s (apt-get install %s)", cmd, HostPackages[cmd]))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s", ErrMissingHostTools, strings.Join(missing, ", "))
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: the lab needs root (namespaces, mounts, cgroups)", ErrMissingHostTools)
	}
	fs, err := os.ReadFile("/proc/filesystems")
	if err == nil && !strings.Contains(string(fs), "overlay") {
		if err := exec.Command("modprobe", "overlay").Run(); err != nil {
			return fmt.Errorf("%w: kernel has no overlayfs (modprobe overlay: %v)", ErrMissingHostTools, err)
		}
	}
	if _, err := os.Stat("/sys/fs/cgroup/unified"); err != nil {
		if _, err2 := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err2 != nil {
			return fmt.Errorf("%w: no cgroup2 hierarchy at /sys/fs/cgroup/unified or /sys/fs/cgroup", ErrMissingHostTools)
		}
	}
	return nil
}

// runScript runs an embedded build script with args, streaming its progress to log, and returns
// the last line of its stdout (the folder it built or found).
func runScript(ctx context.Context, log io.Writer, name string, args ...string) (string, error) {
	// Every script beside it: the build scripts source cache.sh from their own folder.
	dir, err := os.MkdirTemp("", "mastershrink-scripts-")
	if err != nil {
		return "", fmt.Errorf("script %s: %w", name, err)
	}
	defer os.RemoveAll(dir)
	entries, err := scripts.ReadDir("scripts")
	if err != nil {
		return "", fmt.Errorf("script %s: %w", name, err)
	}
	for _, e := range entries {
		body, err := scripts.ReadFile("scripts/" + e.Name())
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, e.Name()), body, 0o700)
		}
		if err != nil {
			return "", fmt.Errorf("script %s: %w", name, err)
		}
	}
	cmd := exec.CommandContext(ctx, "bash", append([]string{filepath.Join(dir, name)}, args...)...)
	cmd.Env = append(os.Environ(), "MASTERSHRINK_CACHE="+CacheDir())
	cmd.Stderr = log
	// The script's go builds are its children: cancelling kills the whole process group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	var last string
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if s := strings.TrimSpace(sc.Text()); s != "" {
			last = s
		}
	}
	if last == "" {
		return "", fmt.Errorf("%s %s printed no folder", name, strings.Join(args, " "))
	}
	return last, nil
}

// binaries are the host folders holding each component's binaries.
type binaries struct {
	Kubernetes, Etcd, Kwok, Cfssl string // Etcd is empty for Debian's etcd
}

// ensureArtifacts builds (or finds cached) the rootfs and every binary the options need.
func ensureArtifacts(ctx context.Context, o Options) (rootfs string, b binaries, err error) {
	fmt.Fprintf(o.Log, "[lab] rootfs and binaries (cached in %s; the first run builds them, about 12 minutes)\n", CacheDir())
	// debootstrap waits on the network and the disk, the builds on the CPU: overlap them.
	var rfs string
	var rootfsErr error
	rootfsDone := make(chan struct{})
	go func() {
		defer close(rootfsDone)
		rfs, rootfsErr = runScript(ctx, o.Log, "build-rootfs.sh")
	}()
	defer func() {
		<-rootfsDone
		rootfs = rfs
		if err == nil && rootfsErr != nil {
			err = rootfsErr
		}
	}()
	if b.Cfssl, err = runScript(ctx, o.Log, "build-binaries.sh", "cfssl", CfsslVersion); err != nil {
		return "", b, err
	}
	if o.EtcdVersion != DebianEtcdVersion {
		if b.Etcd, err = runScript(ctx, o.Log, "build-binaries.sh", "etcd", o.EtcdVersion); err != nil {
			return "", b, err
		}
	}
	if b.Kwok, err = runScript(ctx, o.Log, "build-binaries.sh", "kwok", KwokVersion); err != nil {
		return "", b, err
	}
	if b.Kubernetes, err = runScript(ctx, o.Log, "build-binaries.sh", "kubernetes", o.KubernetesVersion); err != nil {
		return "", b, err
	}
	for _, p := range []string{filepath.Join(b.Cfssl, "cfssl"), filepath.Join(b.Kwok, "stages.yaml"), filepath.Join(b.Kubernetes, "kube-apiserver")} {
		if _, err := os.Stat(p); err != nil {
			return "", b, fmt.Errorf("lab artifact: %w", err)
		}
	}
	return "", b, nil // rootfs is set once debootstrap is done
}

// inotifyLimits are what several labs need at once: each machine's systemd and its services
// take inotify instances, and the host default of 128 runs out after two labs ("Failed to
// allocate manager object: Too many open files" when a machine boots).
var inotifyLimits = map[string]int{
	"/proc/sys/fs/inotify/max_user_instances": 8192,
	"/proc/sys/fs/inotify/max_user_watches":   1048576,
}

// raiseInotifyLimits raises the host's inotify limits where they are lower; it never lowers them.
func raiseInotifyLimits() error { return raiseLimits(inotifyLimits) }

// raiseLimits raises each kernel setting (a /proc/sys path) to its value where it is lower;
// it never lowers one.
func raiseLimits(limits map[string]int) error {
	for path, want := range limits {
		data, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("read %s: %w", path, err)
		}
		if have, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && have >= want {
			continue
		}
		if err := os.WriteFile(path, []byte(strconv.Itoa(want)), 0o644); err != nil {
			return fmt.Errorf("raise %s to %d: %w", path, want, err)
		}
	}
	return nil
}
