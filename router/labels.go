package router

import (
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
