package tenancy

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// Selection is which agencies the selectors of an expression can read.
type Selection struct {
	// Named are the agencies, other than the caller's own, that some
	// selector picks out by its agency matchers.
	Named []string
	// Wildcard is set when some selector's agency matchers match every
	// agency (agency=~".+"): that names no agency in particular.
	Wildcard bool
}

// Selects returns which of agencies, other than own, the vector selectors
// of the PromQL expressions pick out with matchers on the agency label.
// A selector whose agency matchers match every agency (agency=~".*") is a
// wildcard: it names none. An expression that does not parse is tried as
// a series selector (match[] parameters); if that fails too it names none
// (the API refuses it anyway).
//
// This is the one definition of "this expression asks for another
// agency": agency rule files are refused for it, and the query API audits
// it. Neither changes what is read: an agency's reads reach its own data
// only, whatever its matchers say.
func Selects(own string, agencies []string, exprs ...string) Selection {
	var sel Selection
	seen := map[string]bool{}
	check := func(ms []*labels.Matcher) {
		var agencyMs []*labels.Matcher
		for _, m := range ms {
			if m.Name == Label {
				agencyMs = append(agencyMs, m)
			}
		}
		if len(agencyMs) == 0 {
			return
		}
		var matched []string
		for _, a := range agencies {
			ok := true
			for _, m := range agencyMs {
				ok = ok && m.Matches(a)
			}
			if ok {
				matched = append(matched, a)
			}
		}
		if len(matched) == len(agencies) && len(agencies) > 1 {
			sel.Wildcard = true
			return
		}
		for _, a := range matched {
			if a != own && !seen[a] {
				seen[a] = true
				sel.Named = append(sel.Named, a)
			}
		}
	}
	p := parser.NewParser(parser.Options{})
	for _, e := range exprs {
		if e == "" {
			continue
		}
		expr, err := p.ParseExpr(e)
		if err != nil {
			if ms, err := p.ParseMetricSelector(e); err == nil {
				check(ms)
			}
			continue
		}
		parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
			if vs, ok := n.(*parser.VectorSelector); ok {
				check(vs.LabelMatchers)
			}
			return nil
		})
	}
	slices.Sort(sel.Named)
	return sel
}

// Scope returns expr with agency="<agency>" added to every selector: the
// one way to build a query that computes an agency's figures (SLA month,
// report, console, usage), whoever asks. Reading through it, another
// agency's series — or anything an engine holds beside the agency's — can
// never enter the figure.
func Scope(expr, agency string) (string, error) {
	if agency == "" {
		return "", fmt.Errorf("scope %q: no agency", expr)
	}
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		return "", fmt.Errorf("scope %q: %w", expr, err)
	}
	ScopeExpr(e, agency)
	return e.String(), nil
}

// ScopeSet is Scope for a page that shows several agencies at once (the
// NOC wall): every selector gets a matcher of exactly those agencies, and
// the result is read per agency by its agency label.
func ScopeSet(expr string, agencies []string) (string, error) {
	if len(agencies) == 1 {
		return Scope(expr, agencies[0])
	}
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		return "", fmt.Errorf("scope %q: %w", expr, err)
	}
	quoted := make([]string, len(agencies))
	for i, a := range agencies {
		quoted[i] = regexp.QuoteMeta(a)
	}
	re := strings.Join(quoted, "|")
	if len(agencies) == 0 {
		re = "" // matches no agency: every series has one
	}
	addMatcher(e, labels.MustNewMatcher(labels.MatchRegexp, Label, re))
	return e.String(), nil
}

// ScopeExpr adds agency="<agency>" to every selector of a parsed expression,
// in place.
func ScopeExpr(e parser.Expr, agency string) {
	addMatcher(e, labels.MustNewMatcher(labels.MatchEqual, Label, agency))
}

func addMatcher(e parser.Expr, m *labels.Matcher) {
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			vs.LabelMatchers = append(vs.LabelMatchers, m)
		}
		return nil
	})
}

// MustScope is Scope for expressions built by Samdrift itself; it panics
// on one that does not parse (a bug).
func MustScope(expr, agency string) string {
	s, err := Scope(expr, agency)
	if err != nil {
		panic(err)
	}
	return s
}
