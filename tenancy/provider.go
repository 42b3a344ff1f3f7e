package tenancy

import "strings"

// The provider's series. What Samdrift measures (its probes, the health of
// its scrapes) and computes (recording rules, the SLA calendar, incident
// series) is the provider's: SLA figures, reports and usage are computed
// from it alone, and no agency can write it.
//
//   - Reserved names: series named like the provider's computed series
//     (ReservedName) that an agency sends, by any path, are renamed
//     exported_<name>; an agency's own rules may not record them.
//   - The origin label (OriginLabel): Samdrift sets it on what it measures
//     itself (OriginProbe on probe_* results, OriginScrape on up and
//     scrape_* of its scrapes). An agency's own value of the label is
//     kept as exported_samdrift_origin, so a pushed probe_success never
//     passes for the provider's. SLA rules and dashboards select it.
const (
	OriginLabel  = "samdrift_origin"
	OriginProbe  = "probe"
	OriginScrape = "scrape"
)

// reservedPrefixes are the provider's name spaces; reservedNames single
// names (the rule manager's alert series: ALERTS_FOR_STATE restores the
// `for` state of alerts after a restart).
var (
	reservedPrefixes = []string{"sla:", "samdrift_"}
	reservedNames    = map[string]bool{"ALERTS": true, "ALERTS_FOR_STATE": true}
)

// ReservedName reports whether a metric name is the provider's: only
// Samdrift's own rules and writers produce series of that name.
func ReservedName(name string) bool {
	if reservedNames[name] {
		return true
	}
	for _, p := range reservedPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// ExportedName is what a reserved name an agency sent is stored as.
func ExportedName(name string) string { return "exported_" + name }

// ReservedLabel reports whether a label is one the provider sets: the
// agency label, and the origin label of what it measured.
func ReservedLabel(name string) bool { return name == Label || name == OriginLabel }
