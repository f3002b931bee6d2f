package inventory

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Resolved is the inventory as every host gets it: the layout preset, the cluster-wide
// values and the host's own, with every local path absolute. Written as YAML it is itself an
// inventory that loads to the same hosts, so an operator can see, and pin, exactly what the
// presets hide.
type Resolved struct {
	FormatVersion int    `yaml:"format_version"`
	Cluster       string `yaml:"cluster"`
	Layout        string `yaml:"layout"`
	Kubeconfig    string `yaml:"kubeconfig"`
	// The cluster-wide ssh and paths sections are left out: each host carries their effect.
	Hosts []Host `yaml:"hosts"`
}

// Resolved returns the inventory as every host gets it.
func (inv *Inventory) Resolved() Resolved {
	return Resolved{FormatVersion: inv.FormatVersion, Cluster: inv.Cluster, Layout: inv.Layout,
		Kubeconfig: inv.Kubeconfig, Hosts: inv.Hosts}
}

// ResolvedYAML is Resolved as YAML, every field written.
func (inv *Inventory) ResolvedYAML() ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(inv.Resolved()); err != nil {
		return nil, fmt.Errorf("encode inventory %s: %w", inv.File, err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode inventory %s: %w", inv.File, err)
	}
	return b.Bytes(), nil
}

// ResolvedJSON is Resolved as JSON with the same keys, in the same order, as the YAML (and
// the inventory file): one vocabulary whatever the format.
func (inv *Inventory) ResolvedJSON() ([]byte, error) {
	var n yaml.Node
	if err := n.Encode(inv.Resolved()); err != nil {
		return nil, fmt.Errorf("encode inventory %s: %w", inv.File, err)
	}
	var b bytes.Buffer
	if err := nodeJSON(&b, &n); err != nil {
		return nil, fmt.Errorf("encode inventory %s: %w", inv.File, err)
	}
	var out bytes.Buffer
	if err := json.Indent(&out, b.Bytes(), "", "  "); err != nil {
		return nil, fmt.Errorf("encode inventory %s: %w", inv.File, err)
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

// nodeJSON writes a YAML node tree as JSON, keeping the mapping order.
func nodeJSON(b *bytes.Buffer, n *yaml.Node) error {
	switch n.Kind {
	case yaml.DocumentNode:
		return nodeJSON(b, n.Content[0])
	case yaml.MappingNode:
		b.WriteByte('{')
		for i := 0; i+1 < len(n.Content); i += 2 {
			if i > 0 {
				b.WriteByte(',')
			}
			k, _ := json.Marshal(n.Content[i].Value)
			b.Write(k)
			b.WriteByte(':')
			if err := nodeJSON(b, n.Content[i+1]); err != nil {
				return err
			}
		}
		b.WriteByte('}')
	case yaml.SequenceNode:
		b.WriteByte('[')
		for i, c := range n.Content {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := nodeJSON(b, c); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!int", "!!bool":
			b.WriteString(n.Value)
		case "!!null":
			b.WriteString("null")
		default:
			v, _ := json.Marshal(n.Value)
			b.Write(v)
		}
	default:
		return fmt.Errorf("cannot write YAML node kind %v as JSON", n.Kind)
	}
	return nil
}

// Setting is one resolved value and the hosts that have it.
type Setting struct {
	// Name is the key as an inventory writes it ("ssh.user", "paths.etcd_unit").
	Name  string
	Value string
	// Hosts are the hosts with this value, in file order; nil means every host.
	Hosts []string
}

// Settings lists every SSH and path setting with its values, one entry per distinct value,
// in the order the fields are declared: a value that only some hosts have is an override
// and shows as such.
func (inv *Inventory) Settings() []Setting {
	var out []Setting
	add := func(section string, get func(h *Host) reflect.Value) {
		t := get(&Host{}).Type()
		for f := 0; f < t.NumField(); f++ {
			tag, _, _ := strings.Cut(t.Field(f).Tag.Get("yaml"), ",")
			if tag == "" || tag == "-" {
				continue
			}
			var values []string
			byValue := map[string][]string{}
			for i := range inv.Hosts {
				v := showValue(get(&inv.Hosts[i]).Field(f))
				if _, seen := byValue[v]; !seen {
					values = append(values, v)
				}
				byValue[v] = append(byValue[v], inv.Hosts[i].Name)
			}
			for _, v := range values {
				s := Setting{Name: section + "." + tag, Value: v, Hosts: byValue[v]}
				if len(values) == 1 {
					s.Hosts = nil
				}
				out = append(out, s)
			}
		}
	}
	add("ssh", func(h *Host) reflect.Value { return reflect.ValueOf(&h.SSH).Elem() })
	add("paths", func(h *Host) reflect.Value { return reflect.ValueOf(&h.Paths).Elem() })
	return out
}

func showValue(v reflect.Value) string {
	if d, ok := v.Interface().(Duration); ok {
		return d.String()
	}
	switch v.Kind() {
	case reflect.String:
		if v.String() == "" {
			return "-"
		}
		return v.String()
	case reflect.Int:
		return strconv.FormatInt(v.Int(), 10)
	case reflect.Bool:
		return strconv.FormatBool(v.Bool())
	}
	return fmt.Sprint(v.Interface())
}

// Summary is "5 hosts (3 masters, 3 etcd, 5 workers)".
func (inv *Inventory) Summary() string {
	plural := func(n int, one, many string) string {
		if n == 1 {
			return "1 " + one
		}
		return strconv.Itoa(n) + " " + many
	}
	lbs := ""
	if n := len(inv.HostsWithRole(RoleLB)); n > 0 {
		lbs = ", " + plural(n, "LB host", "LB hosts")
	}
	return fmt.Sprintf("%s (%s, %d etcd, %s%s)", plural(len(inv.Hosts), "host", "hosts"),
		plural(len(inv.HostsWithRole(RoleMaster)), "master", "masters"),
		len(inv.HostsWithRole(RoleEtcd)),
		plural(len(inv.HostsWithRole(RoleWorker)), "worker", "workers"), lbs)
}
