package plan

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"

	"github.com/mastershrink/mastershrink/unitfile"
)

// A plan is reviewed, copied, attached to tickets and printed in CI logs, so it never holds a
// secret: private keys, kubeconfig credentials, tokens and passwords in the files it rewrites
// and in the command lines it read are replaced by a marker that names a hash of the value.
// Apply re-derives the plan from the live cluster (where the values are), checks it against
// the reviewed one with the secrets redacted the same way, and writes the live values.

// redactedMarker stands for one secret value: the first 16 hex digits of its SHA-256.
var redactedMarker = regexp.MustCompile(`<redacted:sha256:([0-9a-f]{16})>`)

func marker(value string) string {
	sum := sha256.Sum256([]byte(value))
	return "<redacted:sha256:" + hex.EncodeToString(sum[:])[:16] + ">"
}

// secretPatterns find secret values; the value is always the last submatch.
var secretPatterns = []*regexp.Regexp{
	// PEM private keys, whatever their type.
	regexp.MustCompile(`(-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----)([\s\S]*?)(-----END [A-Z0-9 ]*PRIVATE KEY-----)`),
	// kubeconfig credentials.
	regexp.MustCompile(`(?m)^([ \t-]*(?:client-key-data|token|password|id-token|refresh-token)[ \t]*:[ \t]*)("?[^\s"#]+"?)`),
	// Variables of an EnvironmentFile (or a shell file) whose name says secret; paths to a
	// secret (..._FILE, ..._PATH, ..._DIR) are not secrets.
	regexp.MustCompile(`(?mi)^([ \t]*(?:export[ \t]+)?[A-Z0-9_]*(?:PASSWORD|PASSWD|SECRET|TOKEN|APIKEY|API_KEY|PRIVATE_KEY)[A-Z0-9_]*[ \t]*=[ \t]*)("[^"\n]*"|'[^'\n]*'|[^\s#]+)`),
	// keepalived's VRRP password (authentication { auth_pass ... }).
	regexp.MustCompile(`(?m)^([ \t]*auth_pass[ \t]+)("[^"\n]*"|[^\s#!]+)`),
	// Command-line flags whose name says secret (--token=..., --etcd-password ...).
	regexp.MustCompile(`(--[a-z0-9-]*(?:token|password|secret)[a-z0-9-]*[= ])("[^"\n]*"|'[^'\n]*'|[^\s\\"']+)`),
}

// notSecretName says whether a matched variable or flag names a place, not a value, or a
// value that only looks secret (etcd's cluster token is an identifier every member shares in
// plain sight).
var notSecretName = regexp.MustCompile(`(?i)((_FILE|_PATH|_DIR|-file|-dir|-path)[ \t]*[= ]*[ \t]*$)|initial[-_]cluster[-_]token`)

// Redact replaces every secret value in s by its marker.
func Redact(s string) string {
	for i, re := range secretPatterns {
		s = re.ReplaceAllStringFunc(s, func(m string) string {
			sub := re.FindStringSubmatch(m)
			if i == 0 {
				if redactedMarker.MatchString(sub[2]) {
					return m
				}
				return sub[1] + marker(sub[2]) + sub[3]
			}
			name, value := sub[1], sub[2]
			if notSecretName.MatchString(name) || redactedMarker.MatchString(value) {
				return m
			}
			return name + marker(value)
		})
	}
	return s
}

// Restore puts back into redacted the secret values that live holds, matched by hash: live is
// the file as it is now on the host, whose secrets are the ones the markers stand for.
func Restore(redacted, live string) (string, error) {
	if !redactedMarker.MatchString(redacted) {
		return redacted, nil
	}
	values := map[string]string{}
	for i, re := range secretPatterns {
		for _, sub := range re.FindAllStringSubmatch(live, -1) {
			v := sub[2]
			if i != 0 && notSecretName.MatchString(sub[1]) {
				continue
			}
			m := redactedMarker.FindStringSubmatch(marker(v))
			values[m[1]] = v
		}
	}
	var missing []string
	out := redactedMarker.ReplaceAllStringFunc(redacted, func(m string) string {
		h := redactedMarker.FindStringSubmatch(m)[1]
		v, ok := values[h]
		if !ok {
			missing = append(missing, h)
			return m
		}
		return v
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("the live file no longer holds the secret(s) the plan stands for (sha256 %s)", strings.Join(missing, ", "))
	}
	return out, nil
}

// Redacted returns a copy of p with every secret in the files its steps rewrite, and in the
// command lines of its facts, replaced by markers. Fingerprint and checksum are unchanged:
// the fingerprint is of the real content, as apply computes it again from the live cluster.
func Redacted(p *Plan) *Plan {
	q := *p
	q.Steps = nil
	if p.Steps != nil {
		q.Steps = make([]Step, len(p.Steps))
	}
	for i, s := range p.Steps {
		s.Files = append(s.Files[:0:0], s.Files...)
		for j := range s.Files {
			s.Files[j].Before = Redact(s.Files[j].Before)
			s.Files[j].After = Redact(s.Files[j].After)
		}
		for j, d := range s.Details {
			if j == 0 {
				s.Details = append(s.Details[:0:0], s.Details...)
			}
			s.Details[j] = Redact(d)
		}
		q.Steps[i] = s
	}
	q.Facts = redactFacts(p.Facts)
	return &q
}

// redactFacts redacts the command lines kept in the facts (units' ExecStart, args, flags).
func redactFacts(f Facts) Facts {
	units := make(map[string]HostUnits, len(f.Units))
	for name, hu := range f.Units {
		if hu.Etcd != nil {
			u := *hu.Etcd
			redactUnit(&u)
			hu.Etcd = &u
		}
		if hu.Components != nil {
			c := *hu.Components
			for _, comp := range c.Each() {
				if comp.Unit != nil {
					u := *comp.Unit
					redactUnit(&u)
					comp.Unit = &u
				}
			}
			hu.Components = &c
		}
		units[name] = hu
	}
	if f.Units != nil {
		f.Units = units
	}
	return f
}

func redactUnit(u *unitfile.Unit) {
	u.ExecStart = Redact(u.ExecStart)
	u.Args = append(u.Args[:0:0], u.Args...)
	for i, a := range u.Args {
		u.Args[i] = Redact(a)
	}
	u.Flags = append(u.Flags[:0:0], u.Flags...)
	for i, fl := range u.Flags {
		if r := Redact(fl.Name + "=" + fl.Value); r != fl.Name+"="+fl.Value {
			u.Flags[i].Value = strings.TrimPrefix(r, fl.Name+"=")
		}
	}
}
