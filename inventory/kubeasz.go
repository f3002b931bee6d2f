package inventory

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// A kubeasz cluster is described by an Ansible INI inventory, clusters/NAME/hosts on the
// deploy node: the first file its users will point -i at. ImportKubeasz turns it into an
// inventory.yaml with the kubeasz layout, so nothing is typed twice.

// KubeaszImport is an inventory read from a kubeasz hosts file, ready to be written as YAML.
type KubeaszImport struct {
	Source     string
	Cluster    string
	Kubeconfig string
	SSH        SSH
	// APIServerPort is SECURE_PORT when it is not the layout's 6443.
	APIServerPort int
	Hosts         []Host
	// Notes are what the operator must check or fill in, written as comments.
	Notes []string
}

// kubeasz group names, with the 2.x spellings.
var kubeaszRoles = map[string]Role{
	"etcd": RoleEtcd, "kube_master": RoleMaster, "kube-master": RoleMaster,
	"kube_node": RoleWorker, "kube-node": RoleWorker,
}

// ImportKubeasz reads clusters/NAME/hosts; the cluster is named after its folder.
func ImportKubeasz(path string) (*KubeaszImport, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("kubeasz hosts file: %w (want the cluster's clusters/NAME/hosts, e.g. /etc/kubeasz/clusters/k8s-01/hosts)", err)
	}
	abs, _ := filepath.Abs(path)
	k, err := ParseKubeasz(data, abs, filepath.Base(filepath.Dir(abs)))
	if err != nil {
		return nil, err
	}
	// kubeasz 3.x writes the admin kubeconfig next to the hosts file.
	kc := filepath.Join(filepath.Dir(abs), "kubectl.kubeconfig")
	if _, err := os.Stat(kc); err == nil {
		k.Kubeconfig = kc
	} else {
		k.Kubeconfig = "/root/.kube/config"
		k.Notes = append(k.Notes, fmt.Sprintf("%s does not exist: kubeconfig: is set to /root/.kube/config, the deploy node's; point it at the cluster's admin kubeconfig", kc))
	}
	return k, nil
}

// ParseKubeasz reads a kubeasz hosts file. Errors name file:line.
func ParseKubeasz(data []byte, file, cluster string) (*KubeaszImport, error) {
	k := &KubeaszImport{Source: file, Cluster: cluster}
	if !hostNameRE.MatchString(cluster) {
		return nil, fmt.Errorf("%s: the cluster folder %q is no valid cluster name (letters, digits, '.', '_' and '-'): give the file from clusters/NAME/hosts", file, cluster)
	}
	if bytes.IndexByte(data, 0) >= 0 {
		return nil, fmt.Errorf("%s: not a text file: want kubeasz's clusters/NAME/hosts (an Ansible INI inventory)", file)
	}
	byKey := map[string]int{} // inventory_hostname -> index in k.Hosts
	var vars map[string]string
	section := ""
	for i, raw := range strings.Split(string(data), "\n") {
		line := strings.TrimSpace(raw)
		at := fmt.Sprintf("%s:%d", file, i+1)
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if line[0] == '[' {
			end := strings.IndexByte(line, ']')
			if end < 0 {
				return nil, fmt.Errorf("%s: section header %q has no ']': close it, e.g. [etcd]", at, line)
			}
			section = line[1:end]
			continue
		}
		fields, err := splitINI(line)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", at, err)
		}
		if section == "all:vars" {
			kv := strings.SplitN(line, "=", 2)
			if len(kv) == 2 {
				if vars == nil {
					vars = map[string]string{}
				}
				vars[strings.TrimSpace(kv[0])] = unquote(strings.TrimSpace(kv[1]))
			}
			continue
		}
		role, ok := kubeaszRoles[section]
		if !ok || len(fields) == 0 {
			continue
		}
		name := fields[0]
		if strings.ContainsAny(name, "[]") {
			return nil, fmt.Errorf("%s: host pattern %q: ranges are not imported; list each host on its own line", at, name)
		}
		hv := map[string]string{}
		for _, f := range fields[1:] {
			kv := strings.SplitN(f, "=", 2)
			if len(kv) != 2 {
				return nil, fmt.Errorf("%s: %q is not KEY=VALUE", at, f)
			}
			hv[kv[0]] = unquote(kv[1])
		}
		idx, seen := byKey[name]
		if !seen {
			h := Host{Address: name, Line: i + 1}
			if a := hv["ansible_host"]; a != "" {
				h.Address = a
			}
			if err := checkAddress(h.Address); err != nil {
				return nil, fmt.Errorf("%s: %v", at, err)
			}
			// Without k8s_nodename the host is known by its inventory_hostname, usually its
			// address: a valid name here too.
			h.Name = name
			k.Hosts = append(k.Hosts, h)
			idx = len(k.Hosts) - 1
			byKey[name] = idx
		}
		h := &k.Hosts[idx]
		if n := hv["k8s_nodename"]; n != "" {
			if !hostNameRE.MatchString(n) {
				return nil, fmt.Errorf("%s: k8s_nodename %q is no valid host name (want letters, digits, '.', '_' and '-')", at, n)
			}
			h.Name = n
		}
		if !slices.Contains(h.Roles, role) {
			h.Roles = append(h.Roles, role)
		}
		if err := sshVars(&h.SSH, hv, at); err != nil {
			return nil, err
		}
	}
	if err := sshVars(&k.SSH, vars, file+" [all:vars]"); err != nil {
		return nil, err
	}
	if p := vars["SECURE_PORT"]; p != "" && p != "6443" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("%s [all:vars]: SECURE_PORT %q is no port (want a number from 1 to 65535)", file, p)
		}
		k.APIServerPort = n
	}
	names := map[string]bool{}
	var etcdHosts, masters int
	for _, h := range k.Hosts {
		if names[h.Name] {
			return nil, fmt.Errorf("%s:%d: host name %s is given to two hosts: give each its own k8s_nodename", file, h.Line, h.Name)
		}
		names[h.Name] = true
		if h.Has(RoleEtcd) {
			etcdHosts++
		}
		if h.Has(RoleMaster) {
			masters++
		}
	}
	if etcdHosts == 0 || masters == 0 {
		return nil, fmt.Errorf("%s: %d hosts in [etcd] and %d in [kube_master]: want a kubeasz hosts file with both groups filled", file, etcdHosts, masters)
	}
	k.Notes = append(k.Notes,
		"host keys are checked against ~/.ssh/known_hosts: ssh to each host once, or set ssh.known_hosts",
		"kubeasz 3.x keeps ca-config.json and the CSR files on the deploy node (clusters/NAME/ssl), while the kubeasz layout reads them in the masters' /etc/kubernetes/ssl: set paths.ca_config and paths.csr_dir if the masters lack them")
	return k, nil
}

// sshVars carries Ansible's connection variables over.
func sshVars(s *SSH, vars map[string]string, at string) error {
	for _, key := range []string{"ansible_user", "ansible_ssh_user"} {
		if v := vars[key]; v != "" {
			s.User = v
		}
	}
	for _, key := range []string{"ansible_port", "ansible_ssh_port"} {
		if v := vars[key]; v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 65535 {
				return fmt.Errorf("%s: %s=%q is no port (want a number from 1 to 65535)", at, key, v)
			}
			s.Port = n
		}
	}
	if v := vars["ansible_ssh_private_key_file"]; v != "" {
		s.IdentityFile = v
	}
	if v := vars["ansible_private_key_file"]; v != "" {
		s.IdentityFile = v
	}
	return nil
}

// splitINI splits a host line on blanks, keeping quoted values whole, and drops a trailing
// comment.
func splitINI(line string) ([]string, error) {
	var out []string
	var cur strings.Builder
	var quote byte
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quote != 0:
			cur.WriteByte(c)
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
			cur.WriteByte(c)
		case c == '#' && cur.Len() == 0:
			i = len(line)
		case c == ' ' || c == '\t':
			if cur.Len() > 0 {
				out = append(out, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteByte(c)
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unclosed quote %c: close it on the same line", quote)
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out, nil
}

func unquote(v string) string {
	if len(v) >= 2 && (v[0] == '\'' || v[0] == '"') && v[len(v)-1] == v[0] {
		return v[1 : len(v)-1]
	}
	return v
}

// YAML writes the import as an inventory.yaml, with the notes as comments at the top.
func (k *KubeaszImport) YAML() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Imported from %s by mastershrink inventory import kubeasz.\n", k.Source)
	for _, n := range k.Notes {
		fmt.Fprintf(&b, "# Check: %s.\n", n)
	}
	fmt.Fprintf(&b, "format_version: %d\ncluster: %s\nlayout: kubeasz\nkubeconfig: %s\n", FormatVersion, k.Cluster, strconv.Quote(k.Kubeconfig))
	if s := sshYAML(k.SSH); s != "" {
		fmt.Fprintf(&b, "ssh: {%s}\n", s)
	}
	if k.APIServerPort != 0 {
		fmt.Fprintf(&b, "paths: {apiserver_port: %d}\n", k.APIServerPort)
	}
	b.WriteString("hosts:\n")
	for _, h := range k.Hosts {
		var roles []string
		for _, r := range h.Roles {
			roles = append(roles, string(r))
		}
		fmt.Fprintf(&b, "  - {name: %s, address: %s, roles: [%s]", h.Name, strconv.Quote(h.Address), strings.Join(roles, ", "))
		if s := sshYAML(h.SSH); s != "" {
			fmt.Fprintf(&b, ", ssh: {%s}", s)
		}
		b.WriteString("}\n")
	}
	return b.Bytes()
}

func sshYAML(s SSH) string {
	var parts []string
	if s.User != "" {
		parts = append(parts, "user: "+strconv.Quote(s.User))
	}
	if s.Port != 0 {
		parts = append(parts, "port: "+strconv.Itoa(s.Port))
	}
	if s.IdentityFile != "" {
		parts = append(parts, "identity_file: "+strconv.Quote(s.IdentityFile))
	}
	return strings.Join(parts, ", ")
}
