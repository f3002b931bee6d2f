package plan

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Errors found when reading a plan file. They mean "refused": the plan must be made again.
var (
	ErrTampered      = errors.New("the plan file was edited after it was written")
	ErrFormatVersion = errors.New("the plan file has another format version")
	ErrToolVersion   = errors.New("the plan was made by another version of mastershrink")
	ErrStalePlan     = errors.New("the cluster changed since the plan was made")
)

// canonical is the encoding the checksum covers: the plan as compact JSON with the checksum
// empty. Re-indenting or reordering the file does not change it (a copy made with jq, or
// `plan -o json > f`, still applies); changing any value does.
func canonical(p *Plan) ([]byte, error) {
	q := *p
	q.Checksum = ""
	data, err := json.Marshal(&q)
	if err != nil {
		return nil, fmt.Errorf("encode plan: %w", err)
	}
	return data, nil
}

// Checksum is the SHA-256 of the plan's canonical encoding. It catches accidents and plans
// cut or mangled in transit; it is no seal (anyone can compute it again): apply's guard
// against an edited plan is that it runs only what it derives again from the live cluster.
func Checksum(p *Plan) (string, error) {
	data, err := canonical(p)
	if err != nil {
		return "", err
	}
	return digest(string(data)), nil
}

// Encode writes the plan as indented JSON with its checksum, the bytes of the plan file.
func Encode(p *Plan) ([]byte, error) {
	sum, err := Checksum(p)
	if err != nil {
		return nil, err
	}
	q := *p
	q.Checksum = sum
	data, err := json.MarshalIndent(&q, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode plan: %w", err)
	}
	return append(data, '\n'), nil
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
	if p.Checksum == "" {
		return nil, fmt.Errorf("%w: it has no checksum: make the plan again with mastershrink plan", ErrTampered)
	}
	sum, err := Checksum(&p)
	if err != nil {
		return nil, err
	}
	if sum != p.Checksum {
		return nil, fmt.Errorf("%w: review it again from a fresh mastershrink plan", ErrTampered)
	}
	if wantTool != "" && p.ToolVersion != wantTool {
		return nil, fmt.Errorf("%w: plan %s, tool %s: make the plan again with this mastershrink", ErrToolVersion, p.ToolVersion, wantTool)
	}
	return &p, nil
}
