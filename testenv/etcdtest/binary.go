package etcdtest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
)

// DefaultVersion is the etcd release the fast tier runs unless told otherwise.
const DefaultVersion = "v3.5.21"

// VersionEnv selects the etcd release for every test cluster of a run (for example
// MASTERSHRINK_ETCD_VERSION=v3.6.16, or v3.4.23 for Debian's etcd-server package).
const VersionEnv = "MASTERSHRINK_ETCD_VERSION"

// BinDirEnv points at a folder holding etcd and etcdctl, bypassing the build cache.
const BinDirEnv = "MASTERSHRINK_ETCD_BINDIR"

// debian34 is the folder of Debian 12's etcd-server/etcd-client 3.4.23 binaries; 3.4 is not
// buildable from the module proxy under the v3 module paths the build script uses.
const debian34 = "/usr/bin"

var buildMu sync.Mutex

// BinDir returns the folder holding etcd, etcdctl (and etcdutl from 3.5 on) for version,
// building them into the cache with testenv/scripts/build-binaries.sh the first time.
func BinDir(version string) (string, error) {
	if dir := os.Getenv(BinDirEnv); dir != "" {
		return dir, checkBinary(dir)
	}
	if version == "" {
		version = DefaultVersion
	}
	if !strings.HasPrefix(version, "v") {
		version = "v" + version
	}
	if strings.HasPrefix(version, "v3.4.") {
		if err := checkBinary(debian34); err != nil {
			return "", fmt.Errorf("etcd %s comes from Debian (apt-get install etcd-server etcd-client): %w", version, err)
		}
		return debian34, nil
	}
	dir := filepath.Join(cacheDir(), "bin", "etcd-"+version)
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err == nil {
		return dir, nil
	}
	buildMu.Lock()
	defer buildMu.Unlock()
	script, err := buildScript()
	if err != nil {
		return "", err
	}
	cmd := exec.Command("bash", script, "etcd", version)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = os.Stderr // the first build takes a minute: show its progress
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build etcd %s with %s: %w", version, script, err)
	}
	built := strings.TrimSpace(out.String())
	if built == "" {
		built = dir
	}
	return built, checkBinary(built)
}

func checkBinary(dir string) error {
	for _, name := range []string{"etcd", "etcdctl"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("etcd binaries in %s: %w", dir, err)
		}
	}
	return nil
}

// cacheDir mirrors build-binaries.sh's choice of cache folder.
func cacheDir() string {
	if d := os.Getenv("MASTERSHRINK_CACHE"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "mastershrink")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		home = os.TempDir()
	}
	return filepath.Join(home, ".cache", "mastershrink")
}

func buildScript() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", fmt.Errorf("locate build-binaries.sh: no caller information")
	}
	script := filepath.Join(filepath.Dir(file), "..", "scripts", "build-binaries.sh")
	if _, err := os.Stat(script); err != nil {
		return "", fmt.Errorf("locate build-binaries.sh: %w", err)
	}
	return script, nil
}
