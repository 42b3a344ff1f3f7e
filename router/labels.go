package router

import (
	"slices"
	"strings"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"
	"github.com/prometheus/prometheus/prompb"
)

// relabelWriteRequest rewrites every series of wr for its agency, in place,
// dropping series the agency's relabel rules drop. It returns the number of
// samples kept.
//
// A sender's own agency label (and, for sources bound to a service, its
// service label) is kept as exported_agency (exported_service), the way
// Prometheus treats conflicting target labels without honor_labels.
func relabelWriteRequest(wr *prompb.WriteRequest, src source) int {
	if len(src.agency.RelabelConfigs) == 0 {
		return setOwnedLabels(wr, src)
	}
	return relabelWithBuilder(wr, src)
}

// relabelWithBuilder is the general path, with the agency's relabel rules.
func relabelWithBuilder(wr *prompb.WriteRequest, src source) int {
	lb := labels.NewBuilder(labels.EmptyLabels())
	var sb labels.ScratchBuilder
	kept := wr.Timeseries[:0]
	n := 0
	for _, ts := range wr.Timeseries {
		lb.Reset(ts.ToLabels(&sb, nil))
		exportConflict(lb, "agency")
		if src.service != "" {
			exportConflict(lb, "service")
		}
		if len(src.agency.RelabelConfigs) > 0 && !relabel.ProcessBuilder(lb, src.agency.RelabelConfigs...) {
			continue
		}
		lb.Set("agency", src.agency.ID)
		if src.service != "" {
			lb.Set("service", src.service)
		}
		ts.Labels = prompb.FromLabels(lb.Labels(), ts.Labels[:0])
		n += len(ts.Samples) + len(ts.Histograms)
		kept = append(kept, ts)
	}
	wr.Timeseries = kept
	return n
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
// rules, in place and without allocating: the hot path.
func setOwnedLabels(wr *prompb.WriteRequest, src source) int {
	n := 0
	for i := range wr.Timeseries {
		ts := &wr.Timeseries[i]
		if !slices.IsSortedFunc(ts.Labels, compareLabels) {
			slices.SortFunc(ts.Labels, compareLabels)
		}
		ts.Labels = setOwned(ts.Labels, "agency", src.agency.ID)
		if src.service != "" {
			ts.Labels = setOwned(ts.Labels, "service", src.service)
		}
		n += len(ts.Samples) + len(ts.Histograms)
	}
	return n
}

func compareLabels(a, b prompb.Label) int { return strings.Compare(a.Name, b.Name) }

// setOwned sets a label the router owns on sorted labels, moving a
// sender's own value to exported_<name> (or exported_exported_<name>, …).
func setOwned(ls []prompb.Label, name, value string) []prompb.Label {
	if i, ok := findLabel(ls, name); ok {
		v := ls[i].Value
		ls = slices.Delete(ls, i, i+1)
		target := "exported_" + name
		for {
			if _, taken := findLabel(ls, target); !taken {
				break
			}
			target = "exported_" + target
		}
		ls = insertLabel(ls, prompb.Label{Name: target, Value: v})
	}
	return insertLabel(ls, prompb.Label{Name: name, Value: value})
}

func findLabel(ls []prompb.Label, name string) (int, bool) {
	return slices.BinarySearchFunc(ls, name, func(l prompb.Label, n string) int { return strings.Compare(l.Name, n) })
}

func insertLabel(ls []prompb.Label, l prompb.Label) []prompb.Label {
	i, _ := findLabel(ls, l.Name)
	return slices.Insert(ls, i, l)
}
