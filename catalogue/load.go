package catalogue

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// Problem is one validation problem, located in the catalogue file.
type Problem struct {
	File string
	Line int
	Msg  string
}

func (p Problem) String() string {
	switch {
	case p.File != "" && p.Line > 0:
		return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Msg)
	case p.Line > 0:
		return fmt.Sprintf("line %d: %s", p.Line, p.Msg)
	case p.File != "":
		return fmt.Sprintf("%s: %s", p.File, p.Msg)
	}
	return p.Msg
}

// Error lists every problem found in a catalogue, one per line.
type Error struct {
	Problems []Problem
}

func (e *Error) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// LoadFile reads, parses and validates the catalogue at path, and reads
// the Grafana credential key if it exists.
func LoadFile(path string) (*Catalogue, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{Problems: []Problem{{File: path, Msg: fmt.Sprintf("read catalogue: %v", err)}}}
	}
	c, err := Parse(b, path)
	if err != nil {
		return nil, err
	}
	if key, err := os.ReadFile(c.GrafanaKeyFile()); err == nil && len(key) >= 32 {
		c.grafanaKey = key
	}
	return c, nil
}

// GrafanaKeyFile is the path of the Grafana credential key.
func (c *Catalogue) GrafanaKeyFile() string {
	f := c.Grafana.CredentialKeyFile
	if f == "" {
		f = "grafana-credential.key"
	}
	if !filepath.IsAbs(f) {
		f = filepath.Join(filepath.Dir(c.file), f)
	}
	return f
}

// EnsureGrafanaKey returns the Grafana credential key, creating the key
// file (32 random bytes, mode 0600) if it does not exist yet.
func (c *Catalogue) EnsureGrafanaKey() ([]byte, error) {
	f := c.GrafanaKeyFile()
	if key, err := os.ReadFile(f); err == nil && len(key) >= 32 {
		c.grafanaKey = key
		return key, nil
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	if err := os.WriteFile(f, key, 0o600); err != nil {
		return nil, fmt.Errorf("write grafana credential key: %w", err)
	}
	c.grafanaKey = key
	return key, nil
}

// Parse parses and validates a catalogue; file is used in messages only.
func Parse(b []byte, file string) (*Catalogue, error) {
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &Error{Problems: []Problem{{File: file, Line: 1, Msg: "catalogue is empty"}}}
		}
		pr := yamlProblem(file, err)
		if line, msg := badIndent(b, pr.Line); line > 0 {
			pr.Line, pr.Msg = line, msg+" ("+pr.Msg+")"
		}
		return nil, &Error{Problems: []Problem{pr}}
	}
	doc := &root
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		doc = doc.Content[0]
	}
	if doc.Kind != yaml.MappingNode {
		return nil, &Error{Problems: []Problem{{File: file, Line: doc.Line, Msg: "catalogue must be a YAML mapping"}}}
	}

	v := &validator{file: file, root: doc}
	checkKeys(doc, reflect.TypeOf(Catalogue{}), "", v)
	if len(v.problems) > 0 {
		return nil, &Error{Problems: v.problems}
	}

	c := &Catalogue{file: file}
	if err := doc.Decode(c); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			keys := keysByLine(doc)
			for _, e := range te.Errors {
				pr := yamlProblem(file, errors.New(e))
				pr.Msg = typeProblem(pr.Msg, keys[pr.Line])
				v.problems = append(v.problems, pr)
			}
		} else {
			v.problems = append(v.problems, yamlProblem(file, err))
		}
		return nil, &Error{Problems: v.problems}
	}
	v.validate(c)
	if len(v.problems) > 0 {
		return nil, &Error{Problems: v.problems}
	}
	return c, nil
}

// keysByLine maps each line of a scalar value to the path of its key
// (agencies[0].services[1].sla.availability).
func keysByLine(n *yaml.Node) map[int]string {
	out := map[int]string{}
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				p := n.Content[i].Value
				if path != "" {
					p = path + "." + p
				}
				if _, taken := out[n.Content[i+1].Line]; !taken || n.Content[i+1].Kind == yaml.ScalarNode {
					out[n.Content[i+1].Line] = p
				}
				walk(n.Content[i+1], p)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				walk(c, fmt.Sprintf("%s[%d]", path, i))
			}
		}
	}
	walk(n, "")
	return out
}

var typeErrRe = regexp.MustCompile("^cannot unmarshal !!(\\w+)(?: `(.*)`)? into (.*)$")

// typeProblem words a YAML type error for people, naming the key: "sla.
// availability: "high" is not a number".
func typeProblem(msg, key string) string {
	m := typeErrRe.FindStringSubmatch(msg)
	if m == nil {
		if key != "" {
			return key + ": " + msg
		}
		return msg
	}
	want := m[3]
	switch {
	case strings.HasPrefix(want, "float"):
		want = "a number"
	case strings.HasPrefix(want, "int"), strings.HasPrefix(want, "uint"):
		want = "a whole number"
	case want == "bool":
		want = "true or false"
	case want == "string":
		want = "a string"
	case strings.HasPrefix(want, "[]"):
		want = "a list"
	case strings.HasPrefix(want, "map"):
		want = "a mapping (key: value)"
	case strings.Contains(want, "."):
		_, name, _ := strings.Cut(want, ".")
		want = "a " + strings.ToLower(name)
	}
	got := fmt.Sprintf("%q", m[2])
	switch m[1] {
	case "seq":
		got = "a list"
	case "map":
		got = "a mapping"
	}
	if key == "" {
		return fmt.Sprintf("%s is not %s", got, want)
	}
	return fmt.Sprintf("%s: %s is not %s", key, got, want)
}

// badIndent finds, from the line a YAML syntax error was reported at, the
// first line that steps back out to an indentation no enclosing block has —
// where a misindented key really is (the parser reports where its block
// began).
func badIndent(b []byte, from int) (int, string) {
	var levels []int // indentation of the enclosing blocks
	prev := -1
	for i, line := range strings.Split(string(b), "\n") {
		t := strings.TrimLeft(line, " ")
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		ind := len(line) - len(t)
		switch {
		case ind > prev:
			levels = append(levels, ind)
		case ind < prev:
			for len(levels) > 0 && levels[len(levels)-1] > ind {
				levels = levels[:len(levels)-1]
			}
			if (len(levels) == 0 || levels[len(levels)-1] != ind) && i+1 >= from {
				return i + 1, fmt.Sprintf("bad indentation: %d spaces line up with no block above", ind)
			}
		}
		prev = ind
	}
	return 0, ""
}

var yamlLineRe = regexp.MustCompile(`^(?:yaml: )?(?:unmarshal errors:\s*)?line (\d+): (.*)$`)

// yamlProblem turns a yaml.v3 error ("yaml: line 3: ...") into a Problem.
func yamlProblem(file string, err error) Problem {
	msg := strings.TrimSpace(err.Error())
	if m := yamlLineRe.FindStringSubmatch(msg); m != nil {
		var line int
		fmt.Sscanf(m[1], "%d", &line)
		return Problem{File: file, Line: line, Msg: m[2]}
	}
	return Problem{File: file, Msg: strings.TrimPrefix(msg, "yaml: ")}
}

// checkKeys rejects mapping keys that no field of t accepts, recursively.
// yaml.v3 can do this only for the top-level decoder, not through the
// custom unmarshalers of nested types, so the catalogue checks itself.
func checkKeys(n *yaml.Node, t reflect.Type, where string, v *validator) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	switch {
	case n.Kind == yaml.MappingNode && t.Kind() == reflect.Struct:
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			ft, ok := fields[k.Value]
			if !ok {
				v.problems = append(v.problems, Problem{File: v.file, Line: k.Line, Msg: fmt.Sprintf("unknown field %q%s", k.Value, where)})
				continue
			}
			checkKeys(val, ft, fmt.Sprintf(" in %s", k.Value), v)
		}
	case n.Kind == yaml.MappingNode && t.Kind() == reflect.Map:
		for i := 0; i+1 < len(n.Content); i += 2 {
			checkKeys(n.Content[i+1], t.Elem(), where, v)
		}
	case n.Kind == yaml.SequenceNode && t.Kind() == reflect.Slice:
		for _, c := range n.Content {
			checkKeys(c, t.Elem(), where, v)
		}
	}
}

func yamlFields(t reflect.Type) map[string]reflect.Type {
	m := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" || (!f.IsExported()) {
			continue
		}
		if strings.Contains(opts, "inline") {
			for k, v := range yamlFields(f.Type) {
				m[k] = v
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		m[name] = f.Type
	}
	return m
}

// node finds the YAML node at a path of mapping keys (string) and sequence
// indexes (int), stopping at the deepest node that exists.
func node(root *yaml.Node, path ...any) *yaml.Node {
	n := root
	for _, p := range path {
		switch p := p.(type) {
		case string:
			if n.Kind != yaml.MappingNode {
				return n
			}
			found := false
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == p {
					n = n.Content[i+1]
					found = true
					break
				}
			}
			if !found {
				return n
			}
		case int:
			if n.Kind != yaml.SequenceNode || p >= len(n.Content) {
				return n
			}
			n = n.Content[p]
		}
	}
	return n
}

// RemedyPasswordEnv is the environment variable that, when set, holds the
// Remedy password instead of ticketing.remedy.password_file.
const RemedyPasswordEnv = "SAMDRIFT_REMEDY_PASSWORD"

// ReadSecret returns a secret from the environment variable env, else from
// file (trailing newline removed). Secrets are never inline in the
// catalogue.
func ReadSecret(env, file, what string) (string, error) {
	if v := os.Getenv(env); env != "" && v != "" {
		return v, nil
	}
	if file == "" {
		if env == "" {
			return "", fmt.Errorf("%s: set a password_file", what)
		}
		return "", fmt.Errorf("%s: set %s or a password_file", what, env)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}
