package catalogue

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"
)

// Edits change the catalogue file in place, touching only the lines they
// must: comments, blank lines and the order of everything else are kept.
// Every edit is validated as a whole catalogue before it is written, and is
// refused if the file changed between reading and writing.

// ErrChanged means the file changed underneath an edit.
var ErrChanged = errors.New("the catalogue file changed while it was being edited; nothing was written, try again")

type editable struct {
	path  string
	text  []byte
	sum   [32]byte
	root  *yaml.Node
	lines []string
}

func openEditable(path string) (*editable, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if _, err := Parse(b, path); err != nil {
		return nil, fmt.Errorf("the catalogue is not valid now; fix it first:\n%w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, err
	}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		root = root.Content[0]
	}
	return &editable{path: path, text: b, sum: sha256.Sum256(b), root: root, lines: strings.SplitAfter(string(b), "\n")}, nil
}

// commit validates the new text and writes it atomically.
func (e *editable) commit(lines []string) (*Catalogue, error) {
	text := []byte(strings.Join(lines, ""))
	c, err := Parse(text, e.path)
	if err != nil {
		return nil, err
	}
	cur, err := os.ReadFile(e.path)
	if err != nil {
		return nil, err
	}
	if sha256.Sum256(cur) != e.sum {
		return nil, ErrChanged
	}
	fi, err := os.Stat(e.path)
	if err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(e.path), ".catalogue-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(text); err != nil {
		tmp.Close()
		return nil, err
	}
	if err := tmp.Chmod(fi.Mode().Perm()); err != nil {
		tmp.Close()
		return nil, err
	}
	if err := tmp.Close(); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp.Name(), e.path); err != nil {
		return nil, err
	}
	c.file = e.path
	return c, nil
}

func (e *editable) agencies() *yaml.Node {
	for i := 0; i+1 < len(e.root.Content); i += 2 {
		if e.root.Content[i].Value == "agencies" {
			return e.root.Content[i+1]
		}
	}
	return nil
}

// findAgency returns the agency's mapping node and index, or -1.
func (e *editable) findAgency(id string) (*yaml.Node, int) {
	seq := e.agencies()
	if seq == nil {
		return nil, -1
	}
	for i, item := range seq.Content {
		for j := 0; j+1 < len(item.Content); j += 2 {
			if item.Content[j].Value == "id" && item.Content[j+1].Value == id {
				return item, i
			}
		}
	}
	return nil, -1
}

// lastLine returns the last line (1-based) any node under n occupies.
func lastLine(n *yaml.Node) int {
	l := n.Line
	if n.Kind == yaml.ScalarNode && (n.Style == yaml.LiteralStyle || n.Style == yaml.FoldedStyle) {
		l += strings.Count(n.Value, "\n")
	}
	for _, c := range n.Content {
		l = max(l, lastLine(c))
	}
	return l
}

// AddAgency appends an agency, given as YAML for one sequence item's
// mapping (without the leading "- "), to the catalogue's agencies.
func AddAgency(path string, agencyYAML []byte) (*Catalogue, error) {
	e, err := openEditable(path)
	if err != nil {
		return nil, err
	}
	var probe struct {
		ID string `yaml:"id"`
	}
	if err := yaml.Unmarshal(agencyYAML, &probe); err != nil {
		return nil, err
	}
	if node, _ := e.findAgency(probe.ID); node != nil {
		return nil, fmt.Errorf("agency %q is already in the catalogue", probe.ID)
	}
	indent := "  "
	seq := e.agencies()
	var lines []string
	block := indentBlock(agencyYAML, indent)
	switch {
	case seq == nil:
		lines = append(append([]string(nil), e.lines...), "\nagencies:\n")
		lines = append(lines, block...)
	case len(seq.Content) == 0:
		// "agencies: []": replace the empty flow sequence.
		at := seq.Line - 1
		lines = append([]string(nil), e.lines[:at]...)
		lines = append(lines, strings.Replace(e.lines[at], "[]", "", 1))
		lines = append(lines, block...)
		lines = append(lines, e.lines[at+1:]...)
	default:
		indent = strings.Repeat(" ", seq.Content[0].Column-3)
		block = indentBlock(agencyYAML, indent)
		end := lastLine(seq) // insert after the last agency's last line
		lines = append([]string(nil), e.lines[:end]...)
		if len(lines) > 0 && !strings.HasSuffix(lines[len(lines)-1], "\n") {
			lines[len(lines)-1] += "\n"
		}
		lines = append(lines, "\n")
		lines = append(lines, block...)
		lines = append(lines, e.lines[end:]...)
	}
	return e.commit(lines)
}

// indentBlock renders a mapping as a sequence item at indent.
func indentBlock(b []byte, indent string) []string {
	var out []string
	for i, l := range strings.Split(strings.TrimRight(string(bytes.TrimSpace(b)), "\n"), "\n") {
		prefix := indent + "  "
		if i == 0 {
			prefix = indent + "- "
		}
		if strings.TrimSpace(l) == "" {
			out = append(out, "\n")
			continue
		}
		out = append(out, prefix+l+"\n")
	}
	return out
}

// SetPhase changes an agency's phase.
func SetPhase(path, id string, phase Phase) (*Catalogue, Phase, error) {
	e, err := openEditable(path)
	if err != nil {
		return nil, "", err
	}
	node, _ := e.findAgency(id)
	if node == nil {
		return nil, "", fmt.Errorf("no agency %q in the catalogue", id)
	}
	var val *yaml.Node
	for j := 0; j+1 < len(node.Content); j += 2 {
		if node.Content[j].Value == "phase" {
			val = node.Content[j+1]
		}
	}
	if val == nil {
		return nil, "", fmt.Errorf("agency %q has no phase key", id)
	}
	old := Phase(val.Value)
	lines := append([]string(nil), e.lines...)
	l := lines[val.Line-1]
	col := val.Column - 1
	if col+len(val.Value) > len(l) || l[col:col+len(val.Value)] != val.Value {
		return nil, "", fmt.Errorf("agency %q: cannot locate its phase in the file", id)
	}
	lines[val.Line-1] = l[:col] + string(phase) + l[col+len(val.Value):]
	c, err := e.commit(lines)
	return c, old, err
}

// RemoveAgency deletes an agency's entry (and the comment lines directly
// above it) from the catalogue.
func RemoveAgency(path, id string) (*Catalogue, error) {
	e, err := openEditable(path)
	if err != nil {
		return nil, err
	}
	node, idx := e.findAgency(id)
	if node == nil {
		return nil, fmt.Errorf("no agency %q in the catalogue", id)
	}
	seq := e.agencies()
	from := node.Line - 1 // 0-based line of "- id: …"
	to := lastLine(node)  // exclusive
	if idx+1 < len(seq.Content) {
		to = seq.Content[idx+1].Line - 1
		// Comments right above the next agency are the next agency's.
		for to-1 > from && strings.HasPrefix(strings.TrimSpace(e.lines[to-1]), "#") {
			to--
		}
	}
	for from > 0 && strings.HasPrefix(strings.TrimSpace(e.lines[from-1]), "#") {
		from--
	}
	lines := append(append([]string(nil), e.lines[:from]...), e.lines[to:]...)
	if len(seq.Content) == 1 {
		// The last agency: leave an empty list behind.
		for i, l := range lines {
			if strings.HasPrefix(l, "agencies:") {
				lines[i] = "agencies: []\n"
			}
		}
	}
	return e.commit(lines)
}

// AgencyYAML returns an agency's entry as YAML, in the form AddAgency takes
// (comments inside the entry are not kept).
func AgencyYAML(path, id string) ([]byte, error) {
	e, err := openEditable(path)
	if err != nil {
		return nil, err
	}
	node, _ := e.findAgency(id)
	if node == nil {
		return nil, fmt.Errorf("no agency %q in the catalogue", id)
	}
	n := *node
	n.Style = 0 // block style, whatever the file used
	return yaml.Marshal(&n)
}
