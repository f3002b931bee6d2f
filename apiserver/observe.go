package apiserver

import (
	"context"
	"errors"
	"fmt"
	"io/fs"

	"gopkg.in/yaml.v3"

	"github.com/mastershrink/mastershrink/apiserver/apiserverfacts"
	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/inventory"
	"github.com/mastershrink/mastershrink/unitfile"
)

// Observe reads the kube-apiserver, kube-controller-manager and kube-scheduler units of a
// host and their systemd states. A unit systemd does not know is reported with Present false.
func Observe(ctx context.Context, h host.Host, p inventory.Paths) (Components, error) {
	c := Components{
		Host:              h.Name(),
		APIServer:         Component{Name: KubeAPIServer, UnitName: unitfile.NormalizeName(orDefault(p.APIServerUnit, KubeAPIServer))},
		ControllerManager: Component{Name: KubeControllerManager, UnitName: unitfile.NormalizeName(orDefault(p.ControllerManagerUnit, KubeControllerManager))},
		Scheduler:         Component{Name: KubeScheduler, UnitName: unitfile.NormalizeName(orDefault(p.SchedulerUnit, KubeScheduler))},
	}
	sd, err := h.Systemd(ctx)
	if err != nil {
		return c, fmt.Errorf("observe control plane on %s: %w", h.Name(), err)
	}
	defer sd.Close()
	for _, comp := range c.Each() {
		if err := observeOne(ctx, h, sd, comp); err != nil {
			return c, fmt.Errorf("observe %s on %s: %w", comp.UnitName, h.Name(), err)
		}
	}
	return c, nil
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func observeOne(ctx context.Context, h host.Host, sd host.Systemd, c *Component) error {
	st, err := sd.Status(ctx, c.UnitName)
	if err != nil {
		return err
	}
	c.Status = st
	if st.LoadState == "not-found" {
		return nil
	}
	c.Present = true
	c.Active = st.ActiveState == "active"
	c.Enabled = st.UnitFileState == "enabled" || st.UnitFileState == "enabled-runtime"
	u, err := unitfile.Read(ctx, h, c.UnitName)
	if err != nil {
		return err
	}
	c.Unit = u
	c.Flags, err = apiserverfacts.ParseFlags(u)
	if err != nil {
		return err
	}
	paths := []string{c.Flags.Kubeconfig, c.Flags.AuthnKubeconfig, c.Flags.AuthzKubeconfig}
	if c.Flags.Config != "" && c.Name != KubeAPIServer {
		if kc := configKubeconfig(ctx, h, c.Flags.Config); kc != "" {
			paths = append(paths, kc)
		}
	}
	seen := map[string]bool{}
	for _, p := range paths {
		if p == "" || seen[p] {
			continue
		}
		seen[p] = true
		c.Kubeconfigs = append(c.Kubeconfigs, readKubeconfig(ctx, h, p))
	}
	return nil
}

// configKubeconfig returns clientConnection.kubeconfig of a scheduler/kcm --config file,
// "" when unreadable (the flag is then reported without it).
func configKubeconfig(ctx context.Context, h host.Host, path string) string {
	b, err := h.ReadFile(ctx, path)
	if err != nil {
		return ""
	}
	var cfg struct {
		ClientConnection struct {
			Kubeconfig string `yaml:"kubeconfig"`
		} `yaml:"clientConnection"`
	}
	if yaml.Unmarshal(b, &cfg) != nil {
		return ""
	}
	return cfg.ClientConnection.Kubeconfig
}

func readKubeconfig(ctx context.Context, h host.Host, path string) Kubeconfig {
	kc := Kubeconfig{Path: path}
	b, err := h.ReadFile(ctx, path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			kc.Error = "missing"
		} else {
			kc.Error = err.Error()
		}
		return kc
	}
	kc.Content = string(b)
	servers, err := apiserverfacts.KubeconfigServers(kc.Content)
	if err != nil {
		kc.Error = err.Error()
	}
	kc.Servers = servers
	return kc
}
