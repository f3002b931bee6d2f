package plan

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
)

// Errors found when reading a plan file. They mean "refused": the plan must be made again.
var (
	ErrTampered      = errors.New("the plan file was edited after it was written")
	ErrFormatVersion = errors.New("the plan file has another format version")
	ErrToolVersion   = errors.New("the plan was made by another version of mastershrink")
	ErrStalePlan     = errors.New("the cluster changed since the plan was made")
)

var checksumField = regexp.MustCompile(`"checksum": "[0-9a-f]*"`)

// Encode writes the plan as indented JSON with its checksum, the bytes of the plan file.
func Encode(p *Plan) ([]byte, error) {
	q := *p
	q.Checksum = ""
	data, err := json.MarshalIndent(&q, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode plan: %w", err)
	}
	// The checksum field is empty (omitempty): add it as the last field so Decode can blank
	// it again and hash the exact bytes.
	data = bytes.TrimSuffix(bytes.TrimSpace(data), []byte("}"))
	data = bytes.TrimRight(data, "\n ")
	sum := digest(string(data) + ",\n  \"checksum\": \"\"\n}\n")
	data = append(data, []byte(",\n  \"checksum\": \""+sum+"\"\n}\n")...)
	return data, nil
}

// Decode reads a plan file and refuses one that was edited, or that has another format
// version or tool version than wantTool (empty to accept any tool version).
func Decode(data []byte, wantTool string) (*Plan, error) {
	var p Plan
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("read plan: not a plan file: %w", err)
	}
	if p.FormatVersion != FormatVersion {
		return nil, fmt.Errorf("%w: %d, this mastershrink reads %d: make the plan again", ErrFormatVersion, p.FormatVersion, FormatVersion)
	}
	loc := checksumField.FindAllIndex(data, -1)
	if p.Checksum == "" || len(loc) == 0 {
		return nil, fmt.Errorf("%w: it has no checksum: make the plan again with mastershrink plan", ErrTampered)
	}
	last := loc[len(loc)-1]
	blank := append(append(bytes.Clone(data[:last[0]]), []byte(`"checksum": ""`)...), data[last[1]:]...)
	if digest(string(blank)) != p.Checksum {
		return nil, fmt.Errorf("%w: review it again from a fresh mastershrink plan", ErrTampered)
	}
	if wantTool != "" && p.ToolVersion != wantTool {
		return nil, fmt.Errorf("%w: plan %s, tool %s: make the plan again with this mastershrink", ErrToolVersion, p.ToolVersion, wantTool)
	}
	return &p, nil
}
