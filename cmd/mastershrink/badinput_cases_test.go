package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/mastershrink/mastershrink/certs/certstest"
	"github.com/mastershrink/mastershrink/internal/version"
	"github.com/mastershrink/mastershrink/lb"
	"github.com/mastershrink/mastershrink/plan"
	"github.com/mastershrink/mastershrink/unitfile"
)

// The cases of TestBadInputCorpus, by input.

// fileCase is a case of a corpus file: its problem and fix words.
type fileCase struct {
	problem, fix []string
	noFix        string
}

// fileCases turns a folder's expectations into cases, each running args (and also) on the
// file, in name order.
func fileCases(sub string, code int, args []string, also [][]string, files map[string]fileCase) []badCase {
	var out []badCase
	for name, f := range files {
		out = append(out, badCase{name: sub + "/" + name, file: sub + "/" + name, args: args, also: also, code: code,
			problem: f.problem, fix: f.fix, noFix: f.noFix})
	}
	sortCases(out)
	return out
}

func sortCases(cs []badCase) {
	sort.Slice(cs, func(i, j int) bool { return cs[i].name < cs[j].name })
}

// A malformed inventory: plan refuses it before connecting, and inventory validate says the
// same; a file that does not validate is the operator's input to fix (exit 4).
func inventoryCases() []badCase {
	return fileCases("inventory", exitUsage,
		[]string{"plan", "-i", "{file}", "--remove", "m1", "--out", "{dir}/new-plan.json"},
		[][]string{{"inventory", "validate", "{file}"}},
		map[string]fileCase{
			"malformed-yaml.yaml":       {problem: []string{"malformed-yaml.yaml:10:", "invalid YAML"}, fix: []string{"fix the YAML at this line"}},
			"unknown-field.yaml":        {problem: []string{"unknown-field.yaml", `unknown field "hostz"`}, fix: []string{`did you mean "hosts"?`}},
			"misspelt-key.yaml":         {problem: []string{"misspelt-key.yaml", `unknown field "identity_flie"`}, fix: []string{`did you mean "identity_file"?`}},
			"no-hosts.yaml":             {problem: []string{"no-hosts.yaml", "hosts: no hosts"}, fix: []string{"want at least one"}},
			"duplicate-host.yaml":       {problem: []string{"duplicate-host.yaml", `duplicate host name "m1"`}, fix: []string{"give each host its own name"}},
			"bad-address.yaml":          {problem: []string{"bad-address.yaml", `invalid IPv4 address "10.88.0.300"`}, fix: []string{"want four numbers from 0 to 255"}},
			"unknown-role.yaml":         {problem: []string{"unknown-role.yaml", `unknown role "controlplane"`}, fix: []string{"want etcd, master, worker or lb"}},
			"other-format-version.yaml": {problem: []string{"other-format-version.yaml", "unsupported format_version 2"}, fix: []string{"write it as format_version: 1"}},
			"unknown-layout.yaml":       {problem: []string{"unknown-layout.yaml", `unknown layout "kubeadm"`}, fix: []string{"want envfile, hardway, kubeasz, kubespray or seed003"}},
			"bad-duration.yaml":         {problem: []string{"bad-duration.yaml", `invalid duration "soon"`}, fix: []string{"want e.g. 10s or 1m30s"}},
			"empty.yaml":                {problem: []string{"empty.yaml", "the file is empty"}, fix: []string{"want format_version, layout and hosts"}},
			"binary.yaml":               {problem: []string{"binary.yaml:1: invalid YAML", "not a text file"}, fix: []string{"give the cluster's inventory.yaml"}},
			"missing-cluster.yaml":      {problem: []string{"missing-cluster.yaml:1: cluster: missing"}, fix: []string{"cluster: prod-sh"}},
			"missing-kubeconfig.yaml":   {problem: []string{"missing-kubeconfig.yaml:1: kubeconfig: missing"}, fix: []string{"kubeconfig: admin.kubeconfig"}},
			"bad-cluster-name.yaml":     {problem: []string{"bad-cluster-name.yaml:2: cluster:", `invalid cluster name "prod/sh"`}, fix: []string{"letters, digits, '.', '_' and '-'"}},
			"identity-file-missing.yaml": {problem: []string{"identity-file-missing.yaml:7: ssh.identity_file:", "keys/ops_ed25519 does not exist"},
				fix: []string{"fix the path", "ssh-agent"}},
			"known-hosts-missing.yaml": {problem: []string{"known-hosts-missing.yaml:8: ssh.known_hosts:", ".ssh/known_hosts.does-not-exist does not exist"},
				fix: []string{"ssh-keyscan 127.0.0.1 >> "}},
			"kubeconfig-file-missing.yaml": {problem: []string{"kubeconfig-file-missing.yaml:4: kubeconfig:", "/etc/kubernetes/admin.kubeconfig.missing does not exist"},
				fix: []string{"copy the cluster's admin kubeconfig there"}},
			"ssh-port-out-of-range.yaml": {problem: []string{"ssh-port-out-of-range.yaml:10: ssh.port", "port 70000 out of range"}, fix: []string{"(1-65535)"}},
			"host-without-roles.yaml":    {problem: []string{"host-without-roles.yaml:12: hosts[1].roles: no roles"}, fix: []string{"want at least one of etcd, master, worker or lb"}},
			"host-without-name.yaml":     {problem: []string{"host-without-name.yaml:12: hosts[1].name: missing"}, fix: []string{"e.g. name: m1"}},
			"host-without-address.yaml":  {problem: []string{"host-without-address.yaml:11: hosts[0].address: missing"}, fix: []string{"e.g. address: 10.88.0.11"}},
			"host-name-with-space.yaml":  {problem: []string{"host-name-with-space.yaml", `invalid host name "master 1"`}, fix: []string{"letters, digits, '.', '_' and '-'"}},
			"duplicate-address.yaml":     {problem: []string{"duplicate-address.yaml:12", "address 127.0.0.1 already used"}, fix: []string{"give each host its own address"}},
			"negative-timeout.yaml":      {problem: []string{"negative-timeout.yaml:9: ssh.connect_timeout", `"-5s" must be positive`}, fix: []string{"want e.g. 10s"}},
			"bad-jump-host.yaml":         {problem: []string{"bad-jump-host.yaml:10: ssh.jump_host", `invalid jump host "ops@bastion:ssh"`}, fix: []string{"want [user@]host[:port]"}},
			"hosts-as-map.yaml":          {problem: []string{"hosts-as-map.yaml:11: hosts", "got a mapping"}, fix: []string{"want a list"}},
			"tab-indent.yaml":            {problem: []string{"tab-indent.yaml:6: invalid YAML"}, fix: []string{"indent with spaces, not tabs"}},
			"no-format-version.yaml":     {problem: []string{"no-format-version.yaml:1: format_version: missing"}, fix: []string{"(want 1)"}},
			"repeated-role.yaml":         {problem: []string{"repeated-role.yaml:11", `role "etcd" listed twice`}, fix: []string{"list each role once"}},
			"kubeconfig-is-folder.yaml":  {problem: []string{"kubeconfig-is-folder.yaml:4: kubeconfig", "is a folder"}, fix: []string{"fix kubeconfig: in the inventory"}},
			"unknown-path-key.yaml":      {problem: []string{"unknown-path-key.yaml:11", `unknown field "nginx_listn"`}, fix: []string{`did you mean "nginx_listen"?`}},
			"hostname-address.yaml":      {problem: []string{"hostname-address.yaml:11", `invalid address "https://10.0.0.1:6443": a URL`}, fix: []string{"write the host's bare IP address or DNS name"}},
			"json-instead.yaml":          {problem: []string{"json-instead.yaml:1: layout: missing"}, fix: []string{"want envfile, hardway, kubeasz, kubespray or seed003"}},
		})
}

// A kubeasz hosts file that cannot be imported: exit 4, nothing written.
func kubeaszCases() []badCase {
	return fileCases("kubeasz", exitUsage, []string{"inventory", "import", "kubeasz", "{file}"}, nil, map[string]fileCase{
		"range.hosts":          {problem: []string{"range.hosts:2:", "ranges are not imported"}, fix: []string{"each host on its own line"}},
		"no-masters.hosts":     {problem: []string{"no-masters.hosts", "0 in [kube_master]"}, fix: []string{"want a kubeasz hosts file with both groups filled"}},
		"bad-port.hosts":       {problem: []string{"bad-port.hosts:5:", `ansible_ssh_port="twentytwo" is no port`}, fix: []string{"want a number from 1 to 65535"}},
		"binary.hosts":         {problem: []string{"binary.hosts", "not a text file"}, fix: []string{"clusters/NAME/hosts"}},
		"unclosed-quote.hosts": {problem: []string{"unclosed-quote.hosts:5:", "unclosed quote"}, fix: []string{"close it on the same line"}},
		"duplicate-name.hosts": {problem: []string{"duplicate-name.hosts:", "host name master is given to two hosts"}, fix: []string{"give each its own k8s_nodename"}},
		"bad-nodename.hosts":   {problem: []string{"bad-nodename.hosts:4:", `k8s_nodename "Master_01!"`}, fix: []string{"want letters, digits, '.', '_' and '-'"}},
		"bad-section.hosts":    {problem: []string{"bad-section.hosts:1:", "has no ']'"}, fix: []string{"close it, e.g. [etcd]"}},
		"empty.hosts":          {problem: []string{"empty.hosts", "0 hosts in [etcd] and 0 in [kube_master]"}, fix: []string{"want a kubeasz hosts file with both groups filled"}},
		"inventory-yaml.hosts": {problem: []string{"inventory-yaml.hosts", "0 hosts in [etcd] and 0 in [kube_master]"}, fix: []string{"want a kubeasz hosts file"}},
		"no-etcd.hosts":        {problem: []string{"no-etcd.hosts", "0 hosts in [etcd]"}, fix: []string{"want a kubeasz hosts file with both groups filled"}},
	})
}

// A damaged plan file: apply and undo refuse it before anything runs.
func planFileCases() []badCase {
	cs := fileCases("plan", exitRefused, []string{"apply", "{file}", "-i", "{inv}"}, [][]string{{"undo", "{file}", "-i", "{inv}", "--yes"}},
		map[string]fileCase{
			"truncated.json":            {problem: []string{"truncated.json", "not a plan file"}, fix: []string{"give the file 'mastershrink plan --out FILE' wrote"}},
			"edited.json":               {problem: []string{"edited.json", "edited after it was written"}, fix: []string{"from a fresh mastershrink plan"}},
			"other-format-version.json": {problem: []string{"other-format-version.json", "another format version", "99"}, fix: []string{"make the plan again"}},
			"other-tool-version.json":   {problem: []string{"other-tool-version.json", "another version of mastershrink", "v0.0.1-corpus"}, fix: []string{"make the plan again with this mastershrink"}},
			"no-checksum.json":          {problem: []string{"no-checksum.json", "no checksum"}, fix: []string{"make the plan again"}},
			"not-json.json":             {problem: []string{"not-json.json", "not a plan file"}, fix: []string{"give the file 'mastershrink plan --out FILE' wrote"}},
			"empty.json":                {problem: []string{"empty.json", "not a plan file"}, fix: []string{"give the file 'mastershrink plan --out FILE' wrote"}},
		})
	return cs
}

// A PEM file that holds no usable certificate: certs inspect names it and prints nothing.
func pemCases() []badCase {
	return fileCases("pem", exitError, []string{"certs", "inspect", "{file}"}, nil, map[string]fileCase{
		"garbage.pem":             {problem: []string{"garbage.pem", "no certificate found"}, fix: []string{"give the certificate's PEM file"}},
		"key-instead-of-cert.pem": {problem: []string{"key-instead-of-cert.pem", "this is a private key, not a certificate"}, fix: []string{"give the certificate, in cfssljson naming"}},
		"truncated.pem":           {problem: []string{"truncated.pem", "truncated or damaged PEM block"}, fix: []string{"copy the file again from its source"}},
		"not-der.pem":             {problem: []string{"not-der.pem", "certificate cannot be parsed"}, fix: []string{"compare it with the copy on another host"}},
		"csr-instead-of-cert.pem": {problem: []string{"csr-instead-of-cert.pem", "holds only CERTIFICATE REQUEST"}, fix: []string{"give the certificate's PEM file"}},
		"empty.pem":               {problem: []string{"empty.pem", "the file is empty"}, fix: []string{"give the certificate's PEM file"}},
		"public-key.pem":          {problem: []string{"public-key.pem", "holds only PUBLIC KEY"}, fix: []string{"give the certificate's PEM file"}},
		"html-page.pem":           {problem: []string{"html-page.pem", "holds no PEM block"}, fix: []string{"give the certificate's PEM file"}},
		"headerless.pem":          {problem: []string{"headerless.pem", "holds no PEM block"}, fix: []string{"give the certificate's PEM file"}},
	})
}

// A node's nginx config that cannot be rewritten: the planner refuses, naming the file.
func nginxCases() []badCase {
	apiservers := []string{"10.88.0.11:6443", "10.88.0.12:6443", "10.88.0.13:6443"}
	cases := map[string]fileCase{
		"unbalanced-brace.conf":      {problem: []string{"unbalanced-brace.conf", `unexpected end of file, expecting "}"`}, fix: []string{"close the block"}},
		"missing-semicolon.conf":     {problem: []string{"missing-semicolon.conf:9", `invalid parameter "server" on line 10`}, fix: []string{"is the ';' missing at the end of line 9?"}},
		"no-apiserver-upstream.conf": {problem: []string{"no-apiserver-upstream.conf", "no stream upstream fronts an apiserver"}, fix: []string{"point nginx_config at the proxy config that fronts the apiservers"}},
		"no-stream.conf":             {problem: []string{"no-stream.conf", "no stream block"}, fix: []string{"point nginx_config at the proxy config that fronts the apiservers"}},
		"include-missing.conf":       {problem: []string{"include-missing.conf:7", "conf.d/apiserver-upstream.conf was not read"}, fix: []string{"fix the include, or point nginx_config at the config nginx runs"}},
	}
	return libFileCases("nginx", cases, func(name string, data []byte) error {
		main := "/approot/data/k8s/kube-nginx/" + name
		cfg, err := lb.Parse("w2", main, map[string]string{main: string(data)}, apiservers)
		if err == nil {
			// The planner's check: a proxy fronting no apiserver is refused.
			err = lb.RequireAPIServer(cfg)
		}
		if err == nil {
			// Parsed: the rewrite must then refuse, naming why.
			_, err = lb.Rewrite(cfg, apiservers[1:], lb.MarkDown)
		}
		return err
	})
}

// libFileCases turns a folder's expectations into library cases: check gets each file's
// name and content, and returns the error the CLI would print (exit 1).
func libFileCases(sub string, files map[string]fileCase, check func(name string, data []byte) error) []badCase {
	var out []badCase
	for name, f := range files {
		out = append(out, badCase{name: sub + "/" + name, file: sub + "/" + name, code: exitError, problem: f.problem, fix: f.fix, noFix: f.noFix,
			lib: func(dir string) error {
				data, err := os.ReadFile(filepath.Join(dir, name))
				if err != nil {
					return err
				}
				return check(name, data)
			}})
	}
	sortCases(out)
	return out
}

// A kube-apiserver unit whose --etcd-servers cannot be rewritten.
func unitCases() []badCase {
	const noFix = "unitfile names the unit, line and flag but not what to do: the unit is broken for systemd too, and its fix is the operator's"
	cases := map[string]fileCase{
		"flag-missing.service":        {problem: []string{"--etcd-servers: flag not found"}, noFix: noFix},
		"flag-repeated.service":       {problem: []string{"--etcd-servers at", "flag given more than once"}, noFix: noFix},
		"broken-continuation.service": {problem: []string{"broken-continuation.service", "trailing backslash"}, noFix: noFix},
		"unterminated-quote.service":  {problem: []string{"unterminated-quote.service", "unbalanced quote"}, noFix: noFix},
		"no-execstart.service":        {problem: []string{"no-execstart.service: no ExecStart"}, noFix: noFix},
		"bad-section-header.service":  {problem: []string{"bad-section-header.service", `invalid section header "[Unit"`}, noFix: noFix},
	}
	out := libFileCases("unit", cases, func(name string, data []byte) error { return unitEdit(name, string(data)) })
	// systemd refuses a unit line longer than LONG_LINE_MAX (1 MiB).
	out = append(out, badCase{name: "unit/line over systemd's limit", code: exitError, problem: []string{"long-line.service", "over systemd's limit"}, noFix: noFix,
		lib: func(string) error {
			return unitEdit("long-line.service", "[Service]\nExecStart=/approot/data/k8s/bin/kube-apiserver --etcd-servers=https://10.88.0.11:2379 --feature-gates="+
				strings.Repeat("A=true,", (1<<20)/7+1)+"B=true\n")
		}})
	return out
}

// unitEdit parses a kube-apiserver unit and plans the --etcd-servers rewrite of the shrink.
func unitEdit(name, content string) error {
	frag := "/etc/systemd/system/" + name
	u, err := unitfile.Parse(name, frag, map[string]string{frag: content}, nil, nil)
	if err != nil {
		return err
	}
	_, err = u.SetFlag("m1", "--etcd-servers", "https://10.88.0.11:2379")
	return err
}

// Targets the inventory alone shows to be wrong: refused (exit 3) with every problem and its
// way out, before any host is dialled, though none would answer.
func targetCases() []badCase {
	target := func(name string, args []string, problem, fix []string) badCase {
		return badCase{name: "target/" + name, args: append(args, "-i", "{inv}", "--out", "{dir}/new-plan.json"), code: exitRefused, problem: problem, fix: fix}
	}
	return []badCase{
		target("unknown host", []string{"plan", "--remove", "m9"}, []string{`--remove m9: no host "m9" in the inventory`}, []string{"use a host name from the inventory: m1, m2, m3, w1, w2"}),
		target("typo of a host", []string{"plan", "--drain", "w22"}, []string{`--drain w22: no host "w22"`}, []string{"did you mean w2?"}),
		target("address instead of name", []string{"plan", "--remove", "192.0.2.12"}, []string{"192.0.2.12 is the address of m2"}, []string{"use --remove m2"}),
		target("every master", []string{"plan", "--remove", "m1,m2,m3"}, []string{"removes every master"}, []string{"remove fewer hosts"}),
		target("worker in --remove", []string{"plan", "--remove", "w1"}, []string{"--remove w1: w1 is a worker"}, []string{"--drain w1"}),
		target("master in --drain", []string{"plan", "--drain", "m1"}, []string{"--drain m1: m1 is a master and etcd host"}, []string{"--remove m1"}),
		target("offline host not leaving", []string{"plan", "--remove", "m3", "--offline", "m2"}, []string{"--offline m2: m2 is neither removed nor drained"}, []string{"drop it from --offline"}),
		target("stray comma", []string{"plan", "--remove", "m3,"}, []string{"an empty host name"}, []string{"--remove m2,m3"}),
		target("apply on the spot", []string{"apply", "--remove", "m9", "--yes"}, []string{`--remove m9: no host "m9"`}, []string{"m1, m2, m3, w1, w2"}),
		target("every problem at once", []string{"plan", "--remove", "m9,w1", "--drain", "m1", "--offline", "w2"}, []string{
			"the target has 4 problems:", `--remove m9: no host "m9"`, "--remove w1: w1 is a worker", "--drain m1: m1 is a master", "--offline w2: w2 is neither removed nor drained",
		}, []string{"--drain w1", "--remove m1", "drop it from --offline"}),
		target("host removed and drained", []string{"plan", "--remove", "m3", "--drain", "m3"}, []string{"--drain m3: m3 is in --remove too"}, []string{"drop it from --drain"}),
		target("a path for a host", []string{"plan", "--remove", "m1:/etc"}, []string{`no host "m1:/etc"`}, []string{"m1, m2, m3, w1, w2"}),
		{name: "target/validate with the target", args: []string{"inventory", "validate", "-i", "{inv}", "--remove", "w9"}, code: exitRefused,
			problem: []string{`--remove w9: no host "w9"`}, fix: []string{"w1, w2"}},
		{name: "target/validate every master", args: []string{"inventory", "validate", "-i", "{inv}", "--remove", "m1,m2,m3"}, code: exitRefused,
			problem: []string{"removes every master"}, fix: []string{"remove fewer hosts"}},
		{name: "target/validate a master in --drain", args: []string{"inventory", "validate", "-i", "{inv}", "--drain", "m2"}, code: exitRefused,
			problem: []string{"--drain m2: m2 is a master"}, fix: []string{"--remove m2"}},
	}
}

// Flags and arguments: a usage error (exit 4) naming the flag and what it wants, before
// anything is read from a host.
func flagCases() []badCase {
	flag := func(name string, args []string, problem, fix []string) badCase {
		return badCase{name: "flags/" + name, args: args, code: exitUsage, problem: problem, fix: fix}
	}
	const listFlags, usage = "--help lists the flags", "(usage: mastershrink "
	return []badCase{
		flag("-v with a word", []string{"version", "-v=loud"}, []string{`"loud"`}, []string{"want a level such as 4"}),
		flag("--v with a negative level", []string{"version", "--v=-1"}, []string{`"-1"`}, []string{"want a level"}),
		flag("-v and a word after the command", []string{"version", "-v", "loud"}, []string{`unknown command "loud"`}, []string{usage + "version"}),
		flag("version -o xml", []string{"version", "-o", "xml"}, []string{`-o "xml"`}, []string{"want text, json or yaml"}),
		flag("version with an argument", []string{"version", "now"}, []string{`unknown command "now"`}, []string{usage + "version"}),
		flag("inventory show -o wide", []string{"inventory", "show", "{inv}", "-o", "wide"}, []string{`-o "wide"`}, []string{"want table, json or yaml"}),
		flag("inventory show without a file", []string{"inventory", "show"}, []string{"no inventory"}, []string{"-i inventory.yaml"}),
		flag("inventory validate without a file", []string{"inventory", "validate"}, []string{"no inventory"}, []string{"-i inventory.yaml"}),
		flag("inventory validate with two files", []string{"inventory", "validate", "-i", "{inv}", "other.yaml"}, []string{"two inventories"}, []string{"give one"}),
		flag("inventory validate -o json", []string{"inventory", "validate", "{inv}", "-o", "json"}, []string{"unknown shorthand flag: 'o'"}, []string{listFlags}),
		flag("inventory without a subcommand", []string{"inventory"}, []string{"name a subcommand"}, []string{"mastershrink inventory validate|show"}),
		flag("inventory typo of a subcommand", []string{"inventory", "valdate", "{inv}"}, []string{`unknown command "valdate"`}, []string{"did you mean validate?"}),
		flag("inventory show of a missing file", []string{"inventory", "show", "no-such-inventory.yaml"}, []string{"inventory no-such-inventory.yaml does not exist"}, []string{"give the cluster's inventory file with -i"}),
		flag("status without inventory", []string{"status"}, []string{"no inventory"}, []string{"-i inventory.yaml"}),
		flag("status bad output", []string{"status", "-i", "{inv}", "-o", "xml"}, []string{`-o "xml"`}, []string{"want table, json or yaml"}),
		flag("status -o wide", []string{"status", "-i", "{inv}", "-o", "wide"}, []string{`-o "wide"`}, []string{"want table, json or yaml"}),
		flag("status with an argument", []string{"status", "-i", "{inv}", "m1"}, []string{`unknown command "m1"`}, []string{usage + "status -i INVENTORY"}),
		flag("status --kubeconfig without a value", []string{"status", "-i", "{inv}", "--kubeconfig"}, []string{"flag needs an argument: --kubeconfig"}, []string{"--kubeconfig string: the admin kubeconfig"}),
		flag("plan yml", []string{"plan", "-i", "{inv}", "--remove", "m3", "-o", "yml"}, []string{`-o "yml"`}, []string{"want table, json or yaml"}),
		flag("plan -o wide", []string{"plan", "-i", "{inv}", "--remove", "m3", "-o", "wide"}, []string{`-o "wide"`}, []string{"want table, json or yaml"}),
		flag("plan without inventory", []string{"plan", "--remove", "m2"}, []string{"no inventory"}, []string{"-i inventory.yaml"}),
		flag("plan -i without a value", []string{"plan", "--remove", "m3", "-i"}, []string{"flag needs an argument: 'i' in -i"}, []string{"--inventory string: the cluster inventory file"}),
		flag("plan with nothing to do", []string{"plan", "-i", "{inv}"}, []string{"nothing to plan"}, []string{"name masters with --remove or workers with --drain"}),
		flag("plan with an argument", []string{"plan", "-i", "{inv}", "m3"}, []string{`unknown command "m3"`}, []string{usage + "plan -i INVENTORY --remove HOST"}),
		flag("plan --remvoe", []string{"plan", "-i", "{inv}", "--remvoe", "m1"}, []string{"unknown flag: --remvoe"}, []string{"did you mean --remove?"}),
		flag("terraform's -out", []string{"plan", "-i", "{inv}", "--remove", "m3", "-out", "plan.json"}, []string{"-out reads as -o"}, []string{"write the plan file with --out FILE"}),
		flag("plan inventory missing", []string{"plan", "-i", "{dir}/nope.yaml", "--remove", "m3"}, []string{"nope.yaml does not exist"}, []string{"give the cluster's inventory file with -i"}),
		flag("inventory is a folder", []string{"plan", "-i", "{dir}", "--remove", "m3"}, []string{"a folder, not an inventory file"}, []string{"give the file with -i"}),
		flag("plan --wipe-leaving shred", []string{"plan", "-i", "{inv}", "--remove", "m1", "--wipe-leaving", "shred"}, []string{`--wipe-leaving "shred"`}, []string{"want move or remove"}),
		flag("plan --lb-mode sideways", []string{"plan", "-i", "{inv}", "--remove", "m1", "--lb-mode", "sideways"}, []string{`--lb-mode "sideways"`}, []string{"want down or remove"}),
		flag("plan --lb-mode empty", []string{"plan", "-i", "{inv}", "--remove", "m3", "--lb-mode", ""}, []string{`--lb-mode ""`}, []string{"want down or remove"}),
		flag("apply --lb-mode sideways", []string{"apply", "-i", "{inv}", "--remove", "m1", "--lb-mode", "sideways", "--yes"}, []string{`--lb-mode "sideways"`}, []string{"want down or remove"}),
		flag("apply without inventory", []string{"apply", "{plan}"}, []string{"no inventory"}, []string{"-i inventory.yaml"}),
		flag("apply with nothing to apply", []string{"apply", "-i", "{inv}"}, []string{"nothing to apply"}, []string{"give a plan file"}),
		flag("apply two plan files", []string{"apply", "{plan}", "{plan}", "-i", "{inv}"}, []string{"accepts at most 1 arg(s), received 2"}, []string{usage + "apply [PLAN]"}),
		flag("apply -o json", []string{"apply", "{plan}", "-i", "{inv}", "-o", "json"}, []string{"unknown shorthand flag: 'o'"}, []string{listFlags}),
		flag("apply --lb-concurrency 0", []string{"apply", "{plan}", "-i", "{inv}", "--lb-concurrency", "0"}, []string{"--lb-concurrency 0"}, []string{"want 1 or more"}),
		flag("apply --lb-concurrency in words", []string{"apply", "{plan}", "-i", "{inv}", "--lb-concurrency", "many"}, []string{`invalid argument "many" for "--lb-concurrency"`}, []string{"--lb-concurrency int: how many node proxies"}),
		flag("apply --snapshot-max-age 0", []string{"apply", "{plan}", "-i", "{inv}", "--snapshot-max-age", "0s"}, []string{"--snapshot-max-age 0s"}, []string{"want a positive duration"}),
		flag("apply --skip a typo of a step", []string{"apply", "{plan}", "-i", "{inv}", "--skip", "etcd/snapshto"}, []string{`--skip "etcd/snapshto" names no step`}, []string{"steps are: preflight, etcd/snapshot"}),
		flag("undo without a plan", []string{"undo", "-i", "{inv}"}, []string{"accepts 1 arg(s), received 0"}, []string{usage + "undo PLAN"}),
		flag("undo without inventory", []string{"undo", "{plan}", "--yes"}, []string{"no inventory"}, []string{"-i inventory.yaml"}),
		flag("undo on no terminal without --yes", []string{"undo", "{plan}", "-i", "{inv}"}, []string{"not on a terminal"}, []string{"look with --dry-run, then add --yes"}),
		flag("undo of a missing plan", []string{"undo", "{dir}/none.json", "-i", "{inv}", "--yes"}, []string{"none.json", "no such file"}, []string{"give the file 'mastershrink plan --out FILE' wrote"}),
		flag("undo of a folder", []string{"undo", "{dir}", "-i", "{inv}", "--yes"}, []string{"is a folder"}, []string{"give the file 'mastershrink plan --out FILE' wrote"}),
		flag("undo --only", []string{"undo", "{plan}", "-i", "{inv}", "--yes", "--only", "lb/update"}, []string{"unknown flag: --only"}, []string{"mastershrink undo " + listFlags}),
		flag("unknown command", []string{"shrink", "-i", "{inv}"}, []string{`unknown command "shrink"`}, []string{"the commands are apply, certs"}),
		flag("certs without a subcommand", []string{"certs", "{inv}"}, []string{"unknown command"}, []string{"the commands are inspect, regen"}),
		flag("certs typo of a subcommand", []string{"certs", "inpsect", "{inv}"}, []string{`unknown command "inpsect"`}, []string{"did you mean inspect?"}),
		flag("nodes without a subcommand", []string{"nodes", "w1"}, []string{`unknown command "w1"`}, []string{"the commands are cleanup, drain, verify"}),
		flag("completion for tcsh", []string{"completion", "tcsh"}, []string{`unknown command "tcsh"`}, []string{"the shells are bash, fish, powershell, zsh"}),
		flag("completion for two shells", []string{"completion", "bash", "zsh"}, []string{`unknown command "zsh"`}, []string{usage + "completion bash"}),
		flag("man without a folder", []string{"man"}, []string{"accepts 1 arg(s), received 0"}, []string{usage + "man DIR"}),
		flag("man into a file", []string{"man", "{inv}"}, []string{"inventory.yaml is a file"}, []string{"give the folder to write the man pages into"}),
		flag("import from an unknown tool", []string{"inventory", "import", "kubespray", "{inv}"}, []string{`no import from "kubespray"`}, []string{"mastershrink inventory import kubeasz HOSTS_FILE"}),
		flag("import of a missing file", []string{"inventory", "import", "kubeasz", "{dir}/clusters/k8s-01/hosts"}, []string{"clusters/k8s-01/hosts: no such file"}, []string{"want the cluster's clusters/NAME/hosts"}),
		flag("import without a file", []string{"inventory", "import", "kubeasz"}, []string{"1 arguments"}, []string{"mastershrink inventory import kubeasz HOSTS_FILE"}),
		flag("import of two files", []string{"inventory", "import", "kubeasz", "{inv}", "{plan}"}, []string{"3 arguments"}, []string{"mastershrink inventory import kubeasz HOSTS_FILE"}),
		flag("import without arguments", []string{"inventory", "import"}, []string{"0 arguments"}, []string{"mastershrink inventory import kubeasz HOSTS_FILE"}),
	}
}

// kubectl's conventions: --kubeconfig, KUBECONFIG and --context naming what is not there.
func kubeconfigCases() []badCase {
	kc := func(name, env string, args []string, problem, fix []string) badCase {
		return badCase{name: "kubeconfig/" + name, kubeconfig: env, args: args, code: exitUsage, problem: problem, fix: fix}
	}
	const give = "give the cluster's admin kubeconfig"
	return []badCase{
		kc("status --kubeconfig missing", "", []string{"status", "-i", "{inv}", "--kubeconfig", "{dir}/missing.kubeconfig"}, []string{"missing.kubeconfig (--kubeconfig)", "no such file"}, []string{give}),
		kc("plan --kubeconfig missing", "", []string{"plan", "-i", "{inv}", "--remove", "m3", "--kubeconfig", "{dir}/missing.kubeconfig"}, []string{"missing.kubeconfig (--kubeconfig)", "no such file"}, []string{give}),
		kc("unknown --context", "", []string{"status", "-i", "{inv}", "--kubeconfig", "{dir}/other.kubeconfig", "--context", "prod"}, []string{`context "prod" does not exist`}, []string{"kubectl config get-contexts lists them"}),
		kc("KUBECONFIG of missing files", "{dir}/missing.kubeconfig", []string{"status", "-i", "{inv}"}, []string{"missing.kubeconfig (KUBECONFIG)", "no cluster, context or user in it"}, []string{give}),
		kc("unknown --context from KUBECONFIG", "{dir}/other.kubeconfig", []string{"plan", "-i", "{inv}", "--remove", "m3", "--context", "prod"}, []string{`context "prod" does not exist`}, []string{"kubectl config get-contexts lists them"}),
		kc("--context without a value", "", []string{"status", "-i", "{inv}", "--context"}, []string{"flag needs an argument: --context"}, []string{"--context string: the kubeconfig context to use"}),
		kc("--kubeconfig is a folder", "", []string{"status", "-i", "{inv}", "--kubeconfig", "{dir}"}, []string{"(--kubeconfig)", "is a directory"}, []string{"give the kubeconfig file, not its folder"}),
		kc("--kubeconfig not a kubeconfig", "", []string{"status", "-i", "{inv}", "--kubeconfig", "{inv}"}, []string{"inventory.yaml (--kubeconfig)", "no cluster, context or user in it"}, []string{give}),
	}
}

// writePlanOf writes a plan of one preflight step for cluster as name in dir.
func writePlanOf(t *testing.T, dir, name, cluster string) {
	t.Helper()
	p := &plan.Plan{FormatVersion: plan.FormatVersion, ToolVersion: version.String(), Cluster: cluster,
		Steps: []plan.Step{{ID: "preflight", Kind: plan.KindPreflight, Risk: plan.Safe}}}
	data, err := plan.Encode(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// undo of a plan that never ran, or of another cluster.
func undoCases() []badCase {
	return []badCase{
		{name: "undo/never applied", setup: func(t *testing.T, dir string) { writePlanOf(t, dir, "one-step.json", "t") },
			args: []string{"undo", "{dir}/one-step.json", "-i", "{inv}", "--yes"}, code: exitRefused,
			problem: []string{"the journal records no step of this plan"}, fix: []string{"nothing to undo"}},
		{name: "undo/other cluster", setup: func(t *testing.T, dir string) { writePlanOf(t, dir, "prod.json", "prod") },
			args: []string{"undo", "{dir}/prod.json", "-i", "{inv}", "--yes"}, code: exitRefused,
			problem: []string{`the plan is for cluster "prod"`, `the inventory describes "t"`}, fix: []string{`give the inventory of cluster "prod" with -i`}},
	}
}

// editPlan writes dir/name: the case folder's plan.json changed by change, checksummed again.
func editPlan(name string, change func(p *plan.Plan)) func(t *testing.T, dir string) {
	return func(t *testing.T, dir string) {
		t.Helper()
		var p plan.Plan
		if err := json.Unmarshal(mustRead(t, filepath.Join(dir, "plan.json")), &p); err != nil {
			t.Fatal(err)
		}
		change(&p)
		out, err := plan.Encode(&p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), out, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// The bad inputs of the safety work: selections that would stop a voting member, plans of
// kinds this binary does not know, and flags out of range; every refusal comes before any
// host is dialled.
func applySafetyCases() []badCase {
	apply := func(name string, code int, args []string, problem, fix []string) badCase {
		return badCase{name: "apply/" + name, args: args, code: code, problem: problem, fix: fix}
	}
	edited := func(c badCase, file string, change func(p *plan.Plan)) badCase {
		c.setup = editPlan(file, change)
		return c
	}
	const again = "make the plan again"
	return []badCase{
		apply("skip the removals", exitRefused, []string{"apply", "{plan}", "-i", "{inv}", "--skip", "etcd/remove-member"},
			[]string{"etcd/stop/m2 needs etcd/remove-member/m2", "stopping a member that was not removed"}, []string{"select etcd/remove-member/m2 too"}),
		apply("only the stops", exitRefused, []string{"apply", "{plan}", "-i", "{inv}", "--only", "etcd/stop"},
			[]string{"etcd/stop/m2 needs etcd/remove-member/m2"}, []string{"select etcd/remove-member/m2 too"}),
		apply("skip the snapshot", exitRefused, []string{"apply", "{plan}", "-i", "{inv}", "--skip", "etcd/snapshot"}, []string{"needs etcd/snapshot", "verified snapshot"}, []string{"select etcd/snapshot too"}),
		apply("only the removals", exitRefused, []string{"apply", "{plan}", "-i", "{inv}", "--only", "etcd/remove-member/m2"}, []string{"etcd/remove-member/m2 needs etcd/snapshot"}, []string{"select etcd/snapshot too"}),
		apply("only a retire", exitRefused, []string{"apply", "{plan}", "-i", "{inv}", "--only", "components/retire/m2"}, []string{"components/retire/m2 needs lb/update/m1", "proxies"}, []string{"select lb/update/m1 too"}),
		apply("skip the proxies", exitRefused, []string{"apply", "{plan}", "-i", "{inv}", "--skip", "lb/update"}, []string{"needs lb/update/m1"}, []string{"select lb/update/m1 too"}),
		apply("skip everything but verify", exitRefused, []string{"apply", "{plan}", "-i", "{inv}", "--only", "verify/final,etcd/stop/m2"}, []string{"etcd/stop/m2 needs etcd/remove-member/m2"}, []string{"select etcd/remove-member/m2 too"}),
		edited(apply("unknown kind", exitRefused, []string{"apply", "{dir}/unknown-kind.json", "-i", "{inv}"}, []string{`kind "etcd/defrag"`}, []string{again}),
			"unknown-kind.json", func(p *plan.Plan) { p.Steps[1].Kind = "etcd/defrag"; p.Steps[1].ID = "etcd/defrag" }),
		edited(apply("ID of another kind", exitRefused, []string{"apply", "{dir}/wrong-id.json", "-i", "{inv}"}, []string{"step nodes/cleanup/m1 has kind etcd/snapshot"}, []string{again}),
			"wrong-id.json", func(p *plan.Plan) { p.Steps[1].ID = "nodes/cleanup/m1" }),
		edited(apply("plan of another cluster", exitRefused, []string{"apply", "{dir}/other-cluster.json", "-i", "{inv}"}, []string{`cluster "prod"`, `the inventory describes "t"`}, []string{`give the inventory of cluster "prod" with -i`}),
			"other-cluster.json", func(p *plan.Plan) { p.Cluster = "prod" }),
		edited(apply("refused plan", exitRefused, []string{"apply", "{dir}/refused.json", "-i", "{inv}"}, []string{"refused when it was made", "quorum"}, []string{"restore the unhealthy members first"}),
			"refused.json", func(p *plan.Plan) {
				p.Steps = nil
				p.Refusals = []plan.Refusal{{Code: "quorum-at-risk", Reason: "after removing m3, 1 healthy of 2 members would be below quorum 2", WayOut: "restore the unhealthy members first"}}
			}),
		apply("plan file is a folder", exitUsage, []string{"apply", "{dir}", "-i", "{inv}"}, []string{"is a folder"}, []string{"give the file 'mastershrink plan --out FILE' wrote"}),
		apply("plan file missing", exitUsage, []string{"apply", "{dir}/none.json", "-i", "{inv}"}, []string{"none.json", "no such file"}, []string{"give the file 'mastershrink plan --out FILE' wrote"}),
		apply("snapshot age not a duration", exitUsage, []string{"apply", "{plan}", "-i", "{inv}", "--snapshot-max-age", "soon"}, []string{`invalid argument "soon" for "--snapshot-max-age"`}, []string{"a duration such as 90s, 10m or 1h30m"}),
		apply("negative snapshot age", exitUsage, []string{"apply", "{plan}", "-i", "{inv}", "--snapshot-max-age", "-1h"}, []string{"--snapshot-max-age -1h0m0s"}, []string{"want a positive duration"}),
		apply("plan file and --wipe-leaving", exitUsage, []string{"apply", "{plan}", "-i", "{inv}", "--wipe-leaving", "move"}, []string{"a plan file already says what to remove"}, []string{"drop --remove/--drain/--offline/--wipe-leaving, or the plan file"}),
		apply("plan file and --remove", exitUsage, []string{"apply", "{plan}", "-i", "{inv}", "--remove", "m3"}, []string{"a plan file already says what to remove"}, []string{"drop --remove/--drain/--offline/--wipe-leaving, or the plan file"}),
		apply("empty --only", exitUsage, []string{"apply", "{plan}", "-i", "{inv}", "--only", "certs/resign/x"}, []string{`--only "certs/resign/x" names no step`}, []string{"steps are: preflight"}),
		apply("unknown --skip", exitUsage, []string{"apply", "{plan}", "-i", "{inv}", "--skip", "etcd/defrag"}, []string{`--skip "etcd/defrag" names no step`}, []string{"steps are: preflight"}),
	}
}

// certsPKI writes a cfssl PKI into dir: ca, kubernetes (a leaf of ca) and stray (a leaf of
// another CA), each NAME.pem and NAME-key.pem, and ca-config.json.
func certsPKI(t *testing.T, dir string) {
	t.Helper()
	ca := certstest.NewCA(t, "kubernetes", "ecdsa", 256)
	other := certstest.NewCA(t, "kubernetes", "ecdsa", 256)
	api, apiKey := certstest.Gencert(t, ca, "kubernetes", "kubernetes", certstest.APIServerHosts, "ecdsa", 256)
	stray, strayKey := certstest.Gencert(t, other, "kubernetes", "stray", []string{"127.0.0.1"}, "ecdsa", 256)
	certstest.WriteFiles(t, dir, map[string][]byte{
		"ca.pem": ca.CertPEM, "ca-key.pem": ca.KeyPEM, "ca-config.json": ca.ConfigJSON,
		"kubernetes.pem": api, "kubernetes-key.pem": apiKey, "stray.pem": stray, "stray-key.pem": strayKey,
		"other-ca.pem": other.CertPEM, "other-ca-key.pem": other.KeyPEM,
	})
}

// withSetup adds a setup to a case's.
func withSetup(c badCase, setup func(t *testing.T, dir string)) badCase {
	first := c.setup
	c.setup = func(t *testing.T, dir string) {
		if first != nil {
			first(t, dir)
		}
		setup(t, dir)
	}
	return c
}

// certs inspect and regen: bad flags (exit 4), files that are not what they should be.
func certsCases() []badCase {
	inspect := func(name string, code int, args []string, problem, fix []string) badCase {
		return badCase{name: "certs/" + name, setup: certsPKI, args: append([]string{"certs", "inspect"}, args...), code: code, problem: problem, fix: fix}
	}
	regen := func(name string, code int, args []string, problem, fix []string) badCase {
		return badCase{name: "certs/" + name, setup: certsPKI, args: append([]string{"certs", "regen"}, args...), code: code, problem: problem, fix: fix}
	}
	pem := "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----"
	const giveCert, checkPath = "give the certificate's PEM file", "check the path"
	ca := []string{"--ca", "{dir}/ca.pem", "--ca-key", "{dir}/ca-key.pem"}
	newDir := []string{"--out-dir", "{dir}/new"}
	with := func(args ...[]string) []string {
		var out []string
		for _, a := range args {
			out = append(out, a...)
		}
		return out
	}
	return []badCase{
		inspect("--fail-within in words", exitUsage, []string{"{dir}/kubernetes.pem", "--fail-within", "30days"}, []string{`--fail-within "30days"`}, []string{"want a duration such as 30d"}),
		inspect("--fail-within negative", exitUsage, []string{"{dir}/kubernetes.pem", "--fail-within", "-5d"}, []string{`--fail-within "-5d"`}, []string{"want a whole number of days such as 30d"}),
		inspect("--fail-within a fraction of days", exitUsage, []string{"{dir}/kubernetes.pem", "--fail-within", "1.5d"}, []string{`--fail-within "1.5d"`}, []string{"want a whole number of days such as 30d"}),
		inspect("--ca missing", exitUsage, []string{"{dir}/kubernetes.pem", "--ca", "{dir}/nope.pem"}, []string{"--ca: read", "nope.pem: no such file"}, []string{"give the cluster CA's certificate"}),
		inspect("--ca a leaf", exitUsage, []string{"{dir}/kubernetes.pem", "--ca", "{dir}/kubernetes.pem"}, []string{`"kubernetes" is no CA certificate`}, []string{"give the CA that signs the cluster's certificates"}),
		inspect("--ca a key", exitUsage, []string{"{dir}/kubernetes.pem", "--ca", "{dir}/ca-key.pem"}, []string{"--ca:", "this is a private key, not a certificate"}, []string{"give the certificate"}),
		inspect("--ca the ca-config", exitUsage, []string{"{dir}/kubernetes.pem", "--ca", "{dir}/ca-config.json"}, []string{"--ca:", "ca-config.json: no certificate found"}, []string{giveCert}),
		inspect("-o xml", exitUsage, []string{"{dir}/kubernetes.pem", "-o", "xml"}, []string{`-o "xml"`}, []string{"want table, wide, json, yaml or csr"}),
		inspect("--warn-days negative", exitUsage, []string{"{dir}/kubernetes.pem", "--warn-days", "-1"}, []string{"--warn-days -1"}, []string{"want 0 or more"}),
		inspect("--warn-days in words", exitUsage, []string{"{dir}/kubernetes.pem", "--warn-days", "thirty"}, []string{`invalid argument "thirty" for "--warn-days"`}, []string{"--warn-days int: flag certificates expiring"}),
		inspect("no file", exitUsage, nil, []string{"requires at least 1 arg(s)"}, []string{"(usage: mastershrink certs inspect FILE|HOST:PATH"}),
		inspect("HOST:PATH without inventory", exitUsage, []string{"m1:/etc/kubernetes/ssl/ca.pem"}, []string{"no such local file, and reading HOST:PATH needs the inventory"}, []string{"give -i inventory.yaml"}),
		inspect("HOST:PATH of an unknown host", exitError, []string{"-i", "{inv}", "m9:/etc/kubernetes/ssl/ca.pem"}, []string{`no host "m9" in the inventory`}, []string{"its hosts: m1, m2, m3, w1, w2"}),
		withSetup(inspect("folder without certificates", exitUsage, []string{"{dir}/empty"}, []string{"holds no .pem, .crt or .cer file"}, []string{"give the folder of the certificates"}),
			func(t *testing.T, dir string) { os.Mkdir(filepath.Join(dir, "empty"), 0o755) }),
		inspect("PEM pasted as a file", exitUsage, []string{pem}, []string{"an argument holds a PEM block"}, []string{"give the path of the file"}),
		inspect("key alone", exitError, []string{"{dir}/stray-key.pem"}, []string{"stray-key.pem: this is a private key"}, []string{"give the certificate, in cfssljson naming"}),
		inspect("-o csr of a key", exitError, []string{"{dir}/ca-key.pem", "-o", "csr"}, []string{"ca-key.pem: this is a private key"}, []string{"give the certificate, in cfssljson naming"}),
		inspect("a missing file", exitError, []string{"{dir}/nope.pem"}, []string{"nope.pem: no such file"}, []string{checkPath}),
		regen("without --ca", exitUsage, []string{"{dir}/kubernetes.pem"}, []string{"give the CA that issued the certificate"}, []string{"--ca ca.pem --ca-key ca-key.pem"}),
		regen("--ca without --ca-key", exitUsage, []string{"{dir}/kubernetes.pem", "--ca", "{dir}/ca.pem"}, []string{"give the CA that issued the certificate"}, []string{"--ca ca.pem --ca-key ca-key.pem"}),
		regen("without a certificate", exitUsage, ca, []string{"accepts 1 arg(s), received 0"}, []string{"(usage: mastershrink certs regen CERT"}),
		regen("two certificates", exitUsage, with([]string{"{dir}/kubernetes.pem", "{dir}/stray.pem"}, ca), []string{"accepts 1 arg(s), received 2"}, []string{"(usage: mastershrink certs regen CERT"}),
		regen("--add of no host", exitUsage, with([]string{"{dir}/kubernetes.pem"}, ca, []string{"--add", "not a host!"}), []string{`--add: SAN "not a host!"`}, []string{"give an IP address or a DNS name"}),
		regen("output exists", exitUsage, with([]string{"{dir}/kubernetes.pem"}, ca, []string{"--out-dir", "{dir}"}), []string{"already exist"}, []string{"choose another --out-dir", "--force"}),
		regen("--force over the CA", exitUsage, with([]string{"{dir}/ca.pem"}, ca, []string{"--out-dir", "{dir}", "--force"}), []string{"is the CA file given with --ca"}, []string{"choose another --out-dir"}),
		regen("CA key pasted", exitUsage, []string{"{dir}/kubernetes.pem", "--ca", "{dir}/ca.pem", "--ca-key", pem}, []string{"an argument holds a PEM block"}, []string{"give the path of the file"}),
		regen("--ca-config not JSON", exitUsage, with([]string{"{dir}/kubernetes.pem"}, ca, []string{"--ca-config", "{dir}/ca.pem"}, newDir), []string{"ca.pem is not JSON"}, []string{"give the cluster's ca-config.json"}),
		regen("a CA certificate", exitRefused, with([]string{"{dir}/ca.pem"}, ca, newDir), []string{"this is a CA certificate, not a leaf"}, []string{"re-sign the leaf certificates it signed instead"}),
		regen("another CA", exitRefused, with([]string{"{dir}/stray.pem"}, ca, newDir), []string{"not signed by this CA"}, []string{"give the CA that issued it"}),
		regen("shorter validity", exitRefused, with([]string{"{dir}/kubernetes.pem"}, ca, newDir), []string{"the new certificate would expire before the old one"}, []string{"give the cluster's ca-config.json"}),
		regen("CA key of another CA", exitError, []string{"{dir}/kubernetes.pem", "--ca", "{dir}/ca.pem", "--ca-key", "{dir}/other-ca-key.pem", "--out-dir", "{dir}/new"}, []string{"the CA key does not match the CA certificate"}, []string{"give the key file from the same pair"}),
		regen("--ca-key a certificate", exitError, []string{"{dir}/kubernetes.pem", "--ca", "{dir}/ca.pem", "--ca-key", "{dir}/ca.pem", "--out-dir", "{dir}/new"}, []string{"CA key: this is a certificate, not a private key"}, []string{"give the CA's private key (ca-key.pem)"}),
		regen("--ca of a missing file", exitError, []string{"{dir}/kubernetes.pem", "--ca", "{dir}/nope.pem", "--ca-key", "{dir}/ca-key.pem", "--out-dir", "{dir}/new"}, []string{"nope.pem: no such file"}, []string{checkPath}),
		regen("--remove of no SAN", exitError, with([]string{"{dir}/kubernetes.pem"}, ca, []string{"--ca-config", "{dir}/ca-config.json", "--remove", "10.9.9.9"}, newDir), []string{"cannot remove 10.9.9.9"}, []string{"its SANs are"}),
		regen("unknown profile", exitError, with([]string{"{dir}/kubernetes.pem"}, ca, []string{"--ca-config", "{dir}/ca-config.json", "--profile", "kubernets"}, newDir), []string{`profile "kubernets": no such signing profile`}, []string{"it has: kubernetes, server"}),
		regen("--reuse-key of another pair", exitError, with([]string{"{dir}/kubernetes.pem"}, ca, []string{"--ca-config", "{dir}/ca-config.json", "--reuse-key", "{dir}/stray-key.pem"}, newDir), []string{"existing key: the private key does not match the certificate"}, []string{"give the key of the same pair"}),
		regen("certificate garbage", exitError, with([]string{"{dir}/ca-config.json"}, ca, newDir), []string{"ca-config.json: no certificate found"}, []string{giveCert}),
	}
}

// nodes drain, cleanup and verify: hosts the inventory rules out, bad flags.
func nodesCases() []badCase {
	nodes := func(name string, code int, args []string, problem, fix []string) badCase {
		return badCase{name: "nodes/" + name, args: append(append([]string{"nodes"}, args...), "-i", "{inv}"), code: code, problem: problem, fix: fix}
	}
	const noInventory = "no inventory"
	return []badCase{
		nodes("drain without a host", exitUsage, []string{"drain"}, []string{"requires at least 1 arg(s)"}, []string{"(usage: mastershrink nodes drain NODE..."}),
		nodes("cleanup without a host", exitUsage, []string{"cleanup"}, []string{"requires at least 1 arg(s)"}, []string{"(usage: mastershrink nodes cleanup HOST..."}),
		nodes("verify without a host", exitUsage, []string{"verify"}, []string{"requires at least 1 arg(s)"}, []string{"(usage: mastershrink nodes verify HOST..."}),
		nodes("drain with an empty admin kubeconfig", exitUsage, []string{"drain", "w1"}, []string{"admin.kubeconfig: no cluster, context or user in it"}, []string{"give the cluster's admin kubeconfig"}),
		nodes("cleanup a master", exitRefused, []string{"cleanup", "m1"}, []string{"host m1 is a master or etcd member"}, []string{"retire it with 'mastershrink apply --remove m1' first"}),
		nodes("cleanup an unknown host", exitUsage, []string{"cleanup", "w9"}, []string{`host "w9" is not in`}, []string{"hosts: m1, m2, m3, w1, w2"}),
		nodes("cleanup a typo of a host", exitUsage, []string{"cleanup", "w11"}, []string{`host "w11" is not in`}, []string{"hosts: m1, m2, m3, w1, w2"}),
		nodes("verify an unknown host", exitUsage, []string{"verify", "w9"}, []string{`host "w9" is not in`}, []string{"hosts: m1, m2, m3, w1, w2"}),
		nodes("drain --timeout in words", exitUsage, []string{"drain", "w1", "--timeout", "soon"}, []string{`invalid argument "soon" for "--timeout"`}, []string{"a duration such as 90s, 10m or 1h30m"}),
		nodes("drain --grace-period in words", exitUsage, []string{"drain", "w1", "--grace-period", "short"}, []string{`invalid argument "short" for "--grace-period"`}, []string{"--grace-period int: seconds each pod gets to stop"}),
		nodes("drain --delete-emptydir-data=maybe", exitUsage, []string{"drain", "w1", "--delete-emptydir-data=maybe"}, []string{`invalid argument "maybe"`}, []string{"--delete-emptydir-data=true|false"}),
		nodes("drain -o xml", exitUsage, []string{"drain", "w1", "-o", "xml"}, []string{`-o "xml"`}, []string{"want table or json"}),
		nodes("cleanup -o xml", exitUsage, []string{"cleanup", "w1", "-o", "xml"}, []string{`-o "xml"`}, []string{"want table or json"}),
		nodes("verify -o xml", exitUsage, []string{"verify", "w1", "-o", "xml"}, []string{`-o "xml"`}, []string{"want table or json"}),
		{name: "nodes/drain without inventory", args: []string{"nodes", "drain", "w1"}, code: exitUsage, problem: []string{noInventory}, fix: []string{"-i inventory.yaml"}},
		{name: "nodes/cleanup without inventory", args: []string{"nodes", "cleanup", "w1"}, code: exitUsage, problem: []string{noInventory}, fix: []string{"-i inventory.yaml"}},
		{name: "nodes/verify without inventory", args: []string{"nodes", "verify", "w1"}, code: exitUsage, problem: []string{noInventory}, fix: []string{"-i inventory.yaml"}},
	}
}
