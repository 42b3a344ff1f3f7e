package router

import (
	"slices"
	"strings"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"
	"github.com/prometheus/prometheus/prompb"

	"github.com/samdrift/samdrift/tenancy"
)

// labelled is what labelling did to a batch.
type labelled struct {
	kept    int // samples kept
	renamed int // samples of series renamed because an agency sent a provider's name or label
}

// relabelWriteRequest rewrites every series of wr for its agency, in place,
// dropping series the agency's relabel rules drop.
//
// The router owns the agency label (and, for sources bound to a service,
// the service label): a sender's own value is kept as exported_agency
// (exported_service), the way Prometheus treats conflicting target labels
// without honor_labels. The provider's series stay the provider's
// (tenancy.ReservedName, tenancy.OriginLabel): a series an agency sends
// under a reserved name is stored as exported_<name>, and the origin label
// is kept only on what Samdrift's own collectors measured.
func relabelWriteRequest(wr *prompb.WriteRequest, src source) labelled {
	if len(src.agency.RelabelConfigs) == 0 {
		return setOwnedLabels(wr, src)
	}
	return relabelWithBuilder(wr, src)
}

// relabelWithBuilder is the general path, with the agency's relabel rules.
func relabelWithBuilder(wr *prompb.WriteRequest, src source) labelled {
	lb := labels.NewBuilder(labels.EmptyLabels())
	var sb labels.ScratchBuilder
	kept := wr.Timeseries[:0]
	var out labelled
	for _, ts := range wr.Timeseries {
		lb.Reset(ts.ToLabels(&sb, nil))
		renamed := false
		exportConflict(lb, tenancy.Label)
		if src.service != "" {
			exportConflict(lb, "service")
		}
		// The origin label is the collector's on what it measured; an
		// agency's relabel rules cannot set or change it.
		origin := ""
		if src.trusted {
			origin = lb.Get(tenancy.OriginLabel)
			lb.Del(tenancy.OriginLabel)
		} else if lb.Get(tenancy.OriginLabel) != "" {
			exportConflict(lb, tenancy.OriginLabel)
			renamed = true
		}
		if len(src.agency.RelabelConfigs) > 0 && !relabel.ProcessBuilder(lb, src.agency.RelabelConfigs...) {
			continue
		}
		if lb.Get(tenancy.OriginLabel) != "" {
			exportConflict(lb, tenancy.OriginLabel)
			renamed = true
		}
		if origin != "" {
			lb.Set(tenancy.OriginLabel, origin)
		}
		lb.Set(tenancy.Label, src.agency.ID)
		if src.service != "" {
			lb.Set("service", src.service)
		}
		if name := lb.Get(model.MetricNameLabel); tenancy.ReservedName(name) {
			lb.Set(model.MetricNameLabel, tenancy.ExportedName(name))
			renamed = true
		}
		ts.Labels = prompb.FromLabels(lb.Labels(), ts.Labels[:0])
		n := len(ts.Samples) + len(ts.Histograms)
		out.kept += n
		if renamed {
			out.renamed += n
		}
		kept = append(kept, ts)
	}
	wr.Timeseries = kept
	return out
}

// exportConflict moves a label the router owns to exported_<name>, or the
// first of exported_exported_<name>, … that is free, as Prometheus does.
func exportConflict(lb *labels.Builder, name string) {
	v := lb.Get(name)
	if v == "" {
		return
	}
	lb.Del(name)
	target := "exported_" + name
	for lb.Get(target) != "" {
		target = "exported_" + target
	}
	lb.Set(target, v)
}

// setOwnedLabels is relabelWriteRequest for agencies without relabel
// rules, in place and without allocating for the usual series: the hot
// path.
func setOwnedLabels(wr *prompb.WriteRequest, src source) labelled {
	var out labelled
	for i := range wr.Timeseries {
		ts := &wr.Timeseries[i]
		if !slices.IsSortedFunc(ts.Labels, compareLabels) {
			slices.SortFunc(ts.Labels, compareLabels)
		}
		renamed := false
		ts.Labels = setOwned(ts.Labels, tenancy.Label, src.agency.ID)
		if src.service != "" {
			ts.Labels = setOwned(ts.Labels, "service", src.service)
		}
		if !src.trusted {
			if _, ok := findLabel(ts.Labels, tenancy.OriginLabel); ok {
				ts.Labels = exportOwned(ts.Labels, tenancy.OriginLabel)
				renamed = true
			}
		}
		if i, ok := findLabel(ts.Labels, model.MetricNameLabel); ok && tenancy.ReservedName(ts.Labels[i].Value) {
			ts.Labels[i].Value = tenancy.ExportedName(ts.Labels[i].Value)
			renamed = true
		}
		n := len(ts.Samples) + len(ts.Histograms)
		out.kept += n
		if renamed {
			out.renamed += n
		}
	}
	return out
}

func compareLabels(a, b prompb.Label) int { return strings.Compare(a.Name, b.Name) }

// setOwned sets a label the router owns on sorted labels, moving a
// sender's own value to exported_<name> (or exported_exported_<name>, …).
func setOwned(ls []prompb.Label, name, value string) []prompb.Label {
	return insertLabel(exportOwned(ls, name), prompb.Label{Name: name, Value: value})
}

// exportOwned moves a sender's value of name, if any, to exported_<name>
// (or exported_exported_<name>, …), keeping the labels sorted.
func exportOwned(ls []prompb.Label, name string) []prompb.Label {
	i, ok := findLabel(ls, name)
	if !ok {
		return ls
	}
	v := ls[i].Value
	ls = slices.Delete(ls, i, i+1)
	target := "exported_" + name
	for {
		if _, taken := findLabel(ls, target); !taken {
			break
		}
		target = "exported_" + target
	}
	return insertLabel(ls, prompb.Label{Name: target, Value: v})
}

func findLabel(ls []prompb.Label, name string) (int, bool) {
	return slices.BinarySearchFunc(ls, name, func(l prompb.Label, n string) int { return strings.Compare(l.Name, n) })
}

func insertLabel(ls []prompb.Label, l prompb.Label) []prompb.Label {
	i, _ := findLabel(ls, l.Name)
	return slices.Insert(ls, i, l)
}
