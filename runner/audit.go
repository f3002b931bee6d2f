package runner

import (
	"crypto/sha256"
	"encoding/hex"
	"time"
)

// Change is one line of the audit log: one thing a step changed on the cluster.
type Change struct {
	Time time.Time `json:"time"`
	Plan string    `json:"plan"`
	Run  string    `json:"run"`
	Step string    `json:"step"`
	Host string    `json:"host,omitempty"`
	// Exactly one of File, Unit, Member, Node and Cert names what changed.
	File   string `json:"file,omitempty"`
	Unit   string `json:"unit,omitempty"`
	Member string `json:"member,omitempty"`
	Node   string `json:"node,omitempty"`
	Action string `json:"action"`
	// BeforeSHA256 and AfterSHA256 are of the file's content (empty for a file that did not
	// exist, or for things that are not files).
	BeforeSHA256 string `json:"before_sha256,omitempty"`
	AfterSHA256  string `json:"after_sha256,omitempty"`
	Backup       string `json:"backup,omitempty"`
	Detail       string `json:"detail,omitempty"`
}

// Audit appends changes to a JSON-lines file.
type Audit struct {
	records
	plan, run string
}

// OpenAudit opens (or creates) the audit log at path: 0600, and a symbolic link at path is
// refused (ErrNotPrivateFile).
func OpenAudit(path, planChecksum, run string) (*Audit, error) {
	f, err := openPrivateAppend(path, "audit log")
	if err != nil {
		return nil, err
	}
	return &Audit{records: records{f: f, path: path, what: "audit log"}, plan: planChecksum, run: run}, nil
}

// Record appends c, stamped with the time, plan and run.
func (a *Audit) Record(c Change) error {
	return a.append(func(now time.Time) any {
		c.Time, c.Plan, c.Run = now, a.plan, a.run
		return c
	})
}

func sha(s []byte) string {
	if s == nil {
		return ""
	}
	sum := sha256.Sum256(s)
	return hex.EncodeToString(sum[:])
}
