package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// ServiceIP is the first address of the lab's service range, the `kubernetes` Service.
const (
	ServiceCIDR = "10.254.0.0/16"
	ServiceIP   = "10.254.0.1"
)

// The subject every lab certificate carries, as in seed 003.
var csrNames = []map[string]string{{"C": "CN", "ST": "ShangHai", "L": "ShangHai", "O": "k8s", "OU": "System"}}

type csrKey struct {
	Algo string `json:"algo"`
	Size int    `json:"size"`
}

type csrRequest struct {
	CN    string              `json:"CN"`
	Hosts []string            `json:"hosts,omitempty"`
	Key   csrKey              `json:"key"`
	Names []map[string]string `json:"names"`
	CA    map[string]string   `json:"ca,omitempty"`
}

func names(o string) []map[string]string {
	if o == "" {
		return csrNames
	}
	n := map[string]string{}
	for k, v := range csrNames[0] {
		n[k] = v
	}
	n["O"] = o
	return []map[string]string{n}
}

// caConfigJSON is seed 003's ca-config.json, every certificate signed for expiry.
func caConfigJSON(expiry string) string {
	return strings.ReplaceAll(`{
  "signing": {
    "default": {
      "expiry": "87600h"
    },
    "profiles": {
      "kubernetes": {
        "usages": [
          "signing",
          "key encipherment",
          "server auth",
          "client auth"
        ],
        "expiry": "87600h"
      }
    }
  }
}
`, "87600h", expiry)
}

// pkiCerts are the certificates the lab signs, by cfssljson -bare name.
func pkiCerts(masters []Machine, peersByName bool) map[string]csrRequest {
	var masterIPs []string
	for _, m := range masters {
		masterIPs = append(masterIPs, m.Address)
	}
	key := csrKey{"rsa", 2048}
	etcdHosts := append(append([]string{}, masterIPs...), "127.0.0.1")
	if peersByName {
		// Peers dial each other by name: the name must be in the certificate they verify.
		for _, m := range masters {
			etcdHosts = append(etcdHosts, m.Name)
		}
	}
	apiHosts := append(append([]string{}, masterIPs...), "127.0.0.1", ServiceIP,
		"kubernetes", "kubernetes.default", "kubernetes.default.svc",
		"kubernetes.default.svc.cluster", "kubernetes.default.svc.cluster.local")
	return map[string]csrRequest{
		"etcd":                    {CN: "etcd", Hosts: etcdHosts, Key: key, Names: names("")},
		"kubernetes":              {CN: "kubernetes", Hosts: apiHosts, Key: key, Names: names("")},
		"admin":                   {CN: "admin", Key: key, Names: names("system:masters")},
		"kube-controller-manager": {CN: "system:kube-controller-manager", Hosts: etcdHosts, Key: key, Names: names("system:kube-controller-manager")},
		"kube-scheduler":          {CN: "system:kube-scheduler", Hosts: etcdHosts, Key: key, Names: names("system:kube-scheduler")},
		// kwok plays every worker's kubelet; it needs more than a node identity allows.
		"kubelet": {CN: "kwok", Key: key, Names: names("system:masters")},
	}
}

// makePKI runs cfssl as seed 003 does, in dir: the CA from ca-csr.json, then every certificate
// from its X-csr.json with ca-config.json's kubernetes profile, piped to cfssljson -bare X.
func makePKI(ctx context.Context, dir, cfsslDir string, masters []Machine, peersByName bool, expiry string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("pki dir: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ca-config.json"), []byte(caConfigJSON(expiry)), 0o644); err != nil {
		return fmt.Errorf("ca-config.json: %w", err)
	}
	ca := csrRequest{CN: "kubernetes", Key: csrKey{"rsa", 2048}, Names: csrNames, CA: map[string]string{"expiry": "876000h"}}
	if err := writeJSON(filepath.Join(dir, "ca-csr.json"), ca); err != nil {
		return err
	}
	cfssl := filepath.Join(cfsslDir, "cfssl")
	if err := cfsslPipe(ctx, dir, cfsslDir, "ca", cfssl, "gencert", "-initca", "ca-csr.json"); err != nil {
		return err
	}
	for name, req := range pkiCerts(masters, peersByName) {
		if err := writeJSON(filepath.Join(dir, name+"-csr.json"), req); err != nil {
			return err
		}
		if err := cfsslPipe(ctx, dir, cfsslDir, name, cfssl, "gencert", "-ca=ca.pem", "-ca-key=ca-key.pem",
			"-config=ca-config.json", "-profile=kubernetes", name+"-csr.json"); err != nil {
			return err
		}
	}
	return nil
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", filepath.Base(path), err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	return nil
}

// cfsslPipe runs `cfssl ARGS | cfssljson -bare bare` in dir.
func cfsslPipe(ctx context.Context, dir, cfsslDir, bare string, cfssl string, args ...string) error {
	var out, errb bytes.Buffer
	c := exec.CommandContext(ctx, cfssl, args...)
	c.Dir, c.Stdout, c.Stderr = dir, &out, &errb
	if err := c.Run(); err != nil {
		return fmt.Errorf("cfssl %v for %s: %w: %s", args, bare, err, errb.String())
	}
	j := exec.CommandContext(ctx, filepath.Join(cfsslDir, "cfssljson"), "-bare", bare)
	j.Dir, j.Stdin = dir, &out
	if o, err := j.CombinedOutput(); err != nil {
		return fmt.Errorf("cfssljson -bare %s: %w: %s", bare, err, o)
	}
	if _, err := os.Stat(filepath.Join(dir, bare+".pem")); err != nil {
		return fmt.Errorf("cfssl for %s wrote no certificate (cfssl said: %s): %w", bare, errb.String(), err)
	}
	return nil
}
