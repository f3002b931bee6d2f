package vip

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
)

// DefaultConfig and DefaultUnit are where Debian's keepalived package keeps its config and unit.
const (
	DefaultConfig = "/etc/keepalived/keepalived.conf"
	DefaultUnit   = "keepalived.service"
)

// Instance is one vrrp_instance block.
type Instance struct {
	Name     string `json:"name"`
	State    string `json:"state,omitempty"`
	Priority int    `json:"priority,omitempty"`
	RouterID int    `json:"virtual_router_id,omitempty"`
	// VIPs are the virtual_ipaddress entries, without prefix length and options.
	VIPs []string `json:"vips"`
	// Source is unicast_src_ip; Peers the unicast_peer entries (empty for multicast VRRP).
	Source string   `json:"unicast_src_ip,omitempty"`
	Peers  []string `json:"unicast_peers,omitempty"`
}

// Config is what a keepalived.conf says about VRRP.
type Config struct {
	Instances []Instance `json:"instances"`
	// Includes are include directives: their files are not read, so a planner must refuse
	// to decide from this file alone.
	Includes []string `json:"includes,omitempty"`
}

// VIPs lists every virtual address of the config, sorted and unique.
func (c Config) VIPs() []string {
	seen := map[string]bool{}
	var out []string
	for _, in := range c.Instances {
		for _, v := range in.VIPs {
			if !seen[v] {
				seen[v] = true
				out = append(out, v)
			}
		}
	}
	sort.Strings(out)
	return out
}

// token is one word of the config with the line it stands on.
type token struct {
	text string
	line int // 0-based
	col  int // byte offset in the line
}

// tokens splits keepalived's syntax: words separated by blanks, braces as words of their own,
// comments from # or ! to the end of the line.
func tokens(text string) []token {
	var out []token
	for n, line := range strings.Split(text, "\n") {
		i := 0
		for i < len(line) {
			c := line[i]
			switch {
			case c == '#' || c == '!':
				i = len(line)
			case c == ' ' || c == '\t' || c == '\r':
				i++
			case c == '{' || c == '}':
				out = append(out, token{string(c), n, i})
				i++
			default:
				j := i
				for j < len(line) && !strings.ContainsRune(" \t\r{}#!", rune(line[j])) {
					j++
				}
				out = append(out, token{line[i:j], n, i})
				i = j
			}
		}
	}
	return out
}

// block is a braced block: the words that opened it and its entries, one per line.
type block struct {
	name    string
	args    []string
	entries [][]token // each entry is the words of one line inside the block (not sub-blocks)
	blocks  []*block
	// first is the line of the block's name (or of its brace), last the line of its }.
	first, last int
}

func parseBlocks(toks []token) (*block, error) {
	root := &block{}
	stack := []*block{root}
	var stmt []token // the words of the current line before a brace
	flush := func() {
		if len(stmt) > 0 {
			top := stack[len(stack)-1]
			top.entries = append(top.entries, stmt)
			stmt = nil
		}
	}
	for _, t := range toks {
		if len(stmt) > 0 && t.line != stmt[0].line && t.text != "{" {
			flush()
		}
		switch t.text {
		case "{":
			b := &block{first: t.line}
			if len(stmt) > 0 {
				b.first = stmt[0].line
				b.name = stmt[0].text
				for _, w := range stmt[1:] {
					b.args = append(b.args, w.text)
				}
			}
			stmt = nil
			top := stack[len(stack)-1]
			top.blocks = append(top.blocks, b)
			stack = append(stack, b)
		case "}":
			flush()
			if len(stack) == 1 {
				return nil, fmt.Errorf("line %d: } without a block to close", t.line+1)
			}
			stack[len(stack)-1].last = t.line
			stack = stack[:len(stack)-1]
		default:
			stmt = append(stmt, t)
		}
	}
	flush()
	if len(stack) != 1 {
		return nil, fmt.Errorf("block %s is not closed", stack[len(stack)-1].name)
	}
	return root, nil
}

// Parse reads a keepalived.conf. Only what VRRP failover depends on is kept.
func Parse(text string) (Config, error) {
	root, err := parseBlocks(tokens(text))
	if err != nil {
		return Config{}, err
	}
	var c Config
	for _, e := range root.entries {
		if e[0].text == "include" && len(e) > 1 {
			c.Includes = append(c.Includes, e[1].text)
		}
	}
	for _, b := range root.blocks {
		if b.name != "vrrp_instance" {
			continue
		}
		in := Instance{}
		if len(b.args) > 0 {
			in.Name = b.args[0]
		}
		for _, e := range b.entries {
			if len(e) < 2 {
				continue
			}
			switch e[0].text {
			case "state":
				in.State = e[1].text
			case "priority":
				in.Priority, _ = strconv.Atoi(e[1].text)
			case "virtual_router_id":
				in.RouterID, _ = strconv.Atoi(e[1].text)
			case "unicast_src_ip":
				in.Source = e[1].text
			}
		}
		for _, sb := range b.blocks {
			switch sb.name {
			case "virtual_ipaddress":
				for _, e := range sb.entries {
					a, err := address(e[0].text)
					if err != nil {
						return Config{}, fmt.Errorf("vrrp_instance %s: virtual_ipaddress: %w", in.Name, err)
					}
					in.VIPs = append(in.VIPs, a)
				}
			case "unicast_peer":
				for _, e := range sb.entries {
					for _, w := range e {
						in.Peers = append(in.Peers, w.text)
					}
				}
			}
		}
		if len(in.VIPs) == 0 {
			return Config{}, fmt.Errorf("vrrp_instance %s has no virtual_ipaddress", in.Name)
		}
		c.Instances = append(c.Instances, in)
	}
	return c, nil
}

// address is a virtual_ipaddress entry's address without its prefix length.
func address(s string) (string, error) {
	a, _, _ := strings.Cut(s, "/")
	ip, err := netip.ParseAddr(a)
	if err != nil {
		return "", fmt.Errorf("%q is not an IP address", s)
	}
	return ip.String(), nil
}

// DropPeers removes the given addresses from every unicast_peer block, touching nothing else:
// a peer alone on its line loses the line, one among others loses its word. An instance left
// with no peer loses its unicast settings and goes back to plain VRRP.
func DropPeers(text string, addrs []string) (string, error) {
	drop := map[string]bool{}
	for _, a := range addrs {
		drop[a] = true
	}
	toks := tokens(text)
	root, err := parseBlocks(toks)
	if err != nil {
		return "", err
	}
	braces := map[int]bool{}
	for _, t := range toks {
		if t.text == "{" || t.text == "}" {
			braces[t.line] = true
		}
	}
	type cut struct{ line, from, to int } // to < 0: the whole line
	var cuts []cut
	lines := strings.Split(text, "\n")
	// tokensOn counts the words on each line, to tell a line a block has to itself.
	tokensOn := map[int]int{}
	for _, t := range toks {
		tokensOn[t.line]++
	}
	for _, b := range root.blocks {
		if b.name != "vrrp_instance" {
			continue
		}
		left := 0
		for _, sb := range b.blocks {
			if sb.name == "unicast_peer" {
				for _, e := range sb.entries {
					for _, w := range e {
						if !drop[w.text] {
							left++
						}
					}
				}
			}
		}
		if left == 0 {
			// No peer left: keepalived refuses unicast settings without peers, so the
			// instance goes back to plain VRRP, losing its unicast_peer blocks and its
			// unicast_src_ip, each on lines of its own.
			n := 0
			for _, sb := range b.blocks {
				if sb.name != "unicast_peer" {
					continue
				}
				n++
				words := 0
				for l := sb.first; l <= sb.last; l++ {
					words += tokensOn[l]
				}
				if words != 3+countWords(sb.entries) { // the name, its braces and the peers
					return "", fmt.Errorf("vrrp_instance %s: its unicast_peer block shares a line with other settings; remove the leaving peers by hand", strings.Join(b.args, " "))
				}
				for l := sb.first; l <= sb.last; l++ {
					cuts = append(cuts, cut{l, 0, -1})
				}
			}
			if n == 0 {
				continue
			}
			for _, e := range b.entries {
				if e[0].text == "unicast_src_ip" {
					if tokensOn[e[0].line] != len(e) {
						return "", fmt.Errorf("vrrp_instance %s: unicast_src_ip shares a line with other settings; edit it by hand", strings.Join(b.args, " "))
					}
					cuts = append(cuts, cut{e[0].line, 0, -1})
				}
			}
			continue
		}
		for _, sb := range b.blocks {
			if sb.name != "unicast_peer" {
				continue
			}
			for _, e := range sb.entries {
				all := true
				for _, w := range e {
					if !drop[w.text] {
						all = false
					}
				}
				// The whole line only when nothing else stands on it (no brace of the block).
				if all && !braces[e[0].line] {
					cuts = append(cuts, cut{e[0].line, 0, -1})
					continue
				}
				for _, w := range e {
					if drop[w.text] {
						end := w.col + len(w.text)
						for end < len(lines[w.line]) && (lines[w.line][end] == ' ' || lines[w.line][end] == '\t') {
							end++
						}
						cuts = append(cuts, cut{w.line, w.col, end})
					}
				}
			}
		}
	}
	// Right to left within a line, so earlier offsets stay true.
	sort.Slice(cuts, func(i, j int) bool {
		if cuts[i].line != cuts[j].line {
			return cuts[i].line < cuts[j].line
		}
		return cuts[i].from > cuts[j].from
	})
	gone := map[int]bool{}
	for _, c := range cuts {
		if c.to < 0 {
			gone[c.line] = true
			continue
		}
		lines[c.line] = lines[c.line][:c.from] + lines[c.line][c.to:]
	}
	out := make([]string, 0, len(lines))
	for i, l := range lines {
		if !gone[i] {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n"), nil
}

func countWords(entries [][]token) int {
	n := 0
	for _, e := range entries {
		n += len(e)
	}
	return n
}

// Held parses `ip -o addr show` into the addresses the host holds.
func Held(ipAddrOutput string) []string {
	var out []string
	for _, line := range strings.Split(ipAddrOutput, "\n") {
		f := strings.Fields(line)
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "inet" || f[i] == "inet6" {
				if a, err := address(f[i+1]); err == nil {
					out = append(out, a)
				}
			}
		}
	}
	sort.Strings(out)
	return out
}
