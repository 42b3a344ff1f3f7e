package rules

import (
	"context"
	"fmt"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/storage"

	"github.com/samdrift/samdrift/tenancy"
)

// generatedAlerts are the alerts the SLA rules raise; an agency's own rules
// may not use their names (their `for` state lives in ALERTS_FOR_STATE
// series of the same name).
var generatedAlerts = map[string]bool{"ServiceDown": true, "SLAErrorBudgetBurnFast": true, "SLAErrorBudgetBurnSlow": true}

// CheckReserved refuses agency rules that would write the provider's
// series: a recording rule named like them (tenancy.ReservedName), labels
// the provider sets (tenancy.ReservedLabel), or an alert named like a
// generated one.
func CheckReserved(rgs *rulefmt.RuleGroups) []error {
	var errs []error
	for _, g := range rgs.Groups {
		for i, r := range g.Rules {
			name := r.Record + r.Alert
			if r.Record != "" && tenancy.ReservedName(r.Record) {
				errs = append(errs, fmt.Errorf("group %q, rule %d: %q is a name reserved for Samdrift's own series (sla:*, samdrift_*, ALERTS): choose another", g.Name, i+1, r.Record))
			}
			if generatedAlerts[r.Alert] {
				errs = append(errs, fmt.Errorf("group %q, rule %d: alert %q is raised by Samdrift's SLA rules: choose another name", g.Name, i+1, r.Alert))
			}
			for l := range r.Labels {
				if tenancy.ReservedLabel(l) {
					errs = append(errs, fmt.Errorf("group %q, rule %d, %q: label %q is set by Samdrift, not by rules", g.Name, i+1, name, l))
				}
			}
		}
	}
	return errs
}

// sanitizingAppendable takes an agency's own rule outputs: they always
// carry the agency's label (another value is kept as exported_agency), never
// the provider's origin label, and never a provider's name — so a rule
// cannot write, or shadow, what SLA figures are computed from. ALERTS and
// ALERTS_FOR_STATE are the manager's own series of the agency's alerts.
type sanitizingAppendable struct {
	next   storage.AppendableV2
	agency string
}

func (s sanitizingAppendable) AppenderV2(ctx context.Context) storage.AppenderV2 {
	return &sanitizingAppender{AppenderV2: s.next.AppenderV2(ctx), agency: s.agency, b: labels.NewBuilder(labels.EmptyLabels())}
}

type sanitizingAppender struct {
	storage.AppenderV2
	agency string
	b      *labels.Builder
}

func (a *sanitizingAppender) Append(ref storage.SeriesRef, ls labels.Labels, st, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram, opts storage.AppendV2Options) (storage.SeriesRef, error) {
	return a.AppenderV2.Append(ref, Sanitize(a.b, ls, a.agency), st, t, v, h, fh, opts)
}

// Sanitize returns ls as an agency's own rule output may be stored: its
// agency label the agency's, no origin label, no reserved name but the rule
// manager's alert series.
func Sanitize(b *labels.Builder, ls labels.Labels, agency string) labels.Labels {
	name := ls.Get(model.MetricNameLabel)
	reserved := tenancy.ReservedName(name) && name != "ALERTS" && name != "ALERTS_FOR_STATE"
	if ls.Get(tenancy.Label) == agency && !ls.Has(tenancy.OriginLabel) && !reserved {
		return ls
	}
	b.Reset(ls)
	for _, l := range []string{tenancy.Label, tenancy.OriginLabel} {
		if v := b.Get(l); v != "" && (l != tenancy.Label || v != agency) {
			b.Del(l)
			target := "exported_" + l
			for b.Get(target) != "" {
				target = "exported_" + target
			}
			b.Set(target, v)
		}
	}
	b.Set(tenancy.Label, agency)
	if reserved {
		b.Set(model.MetricNameLabel, tenancy.ExportedName(name))
	}
	return b.Labels()
}
