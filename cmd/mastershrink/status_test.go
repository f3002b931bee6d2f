package main

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

func TestObserveOptionsKubeconfig(t *testing.T) {
	env := map[string]string{"KUBECONFIG": "/a:/b::/a"}
	g := &globalOptions{Getenv: func(k string) string { return env[k] }}
	if o := g.observeOptions(); !reflect.DeepEqual(o.KubeconfigPaths, []string{"/a", "/b"}) || o.Kubeconfig != "" {
		t.Errorf("KUBECONFIG: got %q %q, want the list /a, /b without repeats", o.Kubeconfig, o.KubeconfigPaths)
	}
	g.Kubeconfig, g.Context = "/flag", "ctx"
	if o := g.observeOptions(); o.Kubeconfig != "/flag" || o.KubeconfigPaths != nil || o.Context != "ctx" {
		t.Errorf("--kubeconfig must win over KUBECONFIG: got %+v", o)
	}
	env = map[string]string{}
	g.Kubeconfig = ""
	if o := g.observeOptions(); o.Kubeconfig != "" || o.KubeconfigPaths != nil {
		t.Errorf("neither set: the inventory's kubeconfig must stand, got %+v", o)
	}
}

func TestKubeFlagsParse(t *testing.T) {
	cmd := newRootCmd(streams{Out: &bytes.Buffer{}, ErrOut: &bytes.Buffer{}, In: strings.NewReader("")})
	cmd.SetArgs([]string{"--kubeconfig", "/k", "--context=prod", "version"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if v, _ := cmd.PersistentFlags().GetString("kubeconfig"); v != "/k" {
		t.Errorf("--kubeconfig = %q", v)
	}
	if v, _ := cmd.PersistentFlags().GetString("context"); v != "prod" {
		t.Errorf("--context = %q", v)
	}
}

func TestWriteDataYAMLHasTheJSONKeys(t *testing.T) {
	v := struct {
		FormatVersion int               `json:"format_version"`
		Steps         []string          `json:"steps"`
		Backups       map[string]string `json:"backups,omitempty"`
	}{2, []string{"etcd/snapshot"}, map[string]string{"m1:/etc/x": "/etc/x.bak-1"}}
	var j, y bytes.Buffer
	if err := writeData(&j, v, "json"); err != nil {
		t.Fatal(err)
	}
	if err := writeData(&y, v, "yaml"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(y.String(), "format_version: 2") {
		t.Errorf("yaml lacks the json key format_version:\n%s", y.String())
	}
	var fromJSON, fromYAML map[string]any
	if err := json.Unmarshal(j.Bytes(), &fromJSON); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(y.Bytes(), &fromYAML); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(fromJSON, fromYAML) {
		t.Errorf("json and yaml differ:\n%v\n%v", fromJSON, fromYAML)
	}
}

func TestPlanOutputYAMLAccepted(t *testing.T) {
	if err := validOutput("yaml", "table", "json", "yaml"); err != nil {
		t.Error(err)
	}
	err := validOutput("yml", "table", "json", "yaml")
	if exitCode(err) != exitUsage || !strings.Contains(err.Error(), "want table, json or yaml") {
		t.Errorf("-o yml: %v (exit %d), want a usage error listing the formats", err, exitCode(err))
	}
}

func TestCompletionOfOutputFormats(t *testing.T) {
	for _, sub := range []string{"status", "plan"} {
		out, _, code := run(t, "__complete", sub, "-o", "")
		if code != exitOK || !strings.Contains(out, "table\njson\nyaml\n") {
			t.Errorf("%s -o completion (exit %d):\n%s", sub, code, out)
		}
	}
}
