package rules

import (
	"context"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage"
)

// PublishFunc hands an agency's rule outputs (recorded series, ALERTS, the
// SLA calendar) to the other store replicas, as a remote-write request.
type PublishFunc func(ctx context.Context, agency string, wr *prompb.WriteRequest) error

// batch collects float samples for publishing.
type batch struct {
	ts []prompb.TimeSeries
}

func (b *batch) add(ls labels.Labels, t int64, v float64) {
	pl := make([]prompb.Label, 0, ls.Len())
	ls.Range(func(l labels.Label) { pl = append(pl, prompb.Label{Name: l.Name, Value: l.Value}) })
	b.ts = append(b.ts, prompb.TimeSeries{Labels: pl, Samples: []prompb.Sample{{Value: v, Timestamp: t}}})
}

// teeAppendable appends to the local TSDB and, once committed, publishes
// what it appended: where query replicas run in other processes, they see
// the rules' outputs too. Rules read their own outputs from the local TSDB
// at once, as Prometheus's rules do.
type teeAppendable struct {
	local   storage.AppendableV2
	agency  string
	publish PublishFunc
}

func (t teeAppendable) AppenderV2(ctx context.Context) storage.AppenderV2 {
	return &teeAppenderV2{AppenderV2: t.local.AppenderV2(ctx), ctx: ctx, agency: t.agency, publish: t.publish}
}

type teeAppenderV2 struct {
	storage.AppenderV2
	ctx     context.Context
	agency  string
	publish PublishFunc
	b       batch
}

func (a *teeAppenderV2) Append(ref storage.SeriesRef, ls labels.Labels, st, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram, opts storage.AppendV2Options) (storage.SeriesRef, error) {
	r, err := a.AppenderV2.Append(ref, ls, st, t, v, h, fh, opts)
	if err == nil && h == nil && fh == nil {
		a.b.add(ls, t, v)
	}
	return r, err
}

func (a *teeAppenderV2) Commit() error {
	if err := a.AppenderV2.Commit(); err != nil {
		return err
	}
	if len(a.b.ts) == 0 {
		return nil
	}
	return a.publish(a.ctx, a.agency, &prompb.WriteRequest{Timeseries: a.b.ts})
}

// teeAppender is the same for the calendar's V1 appender.
type teeAppender struct {
	storage.Appender
	ctx     context.Context
	agency  string
	publish PublishFunc
	b       batch
}

func (a *teeAppender) Append(ref storage.SeriesRef, ls labels.Labels, t int64, v float64) (storage.SeriesRef, error) {
	r, err := a.Appender.Append(ref, ls, t, v)
	if err == nil {
		a.b.add(ls, t, v)
	}
	return r, err
}

func (a *teeAppender) Commit() error {
	if err := a.Appender.Commit(); err != nil {
		return err
	}
	if len(a.b.ts) == 0 {
		return nil
	}
	return a.publish(a.ctx, a.agency, &prompb.WriteRequest{Timeseries: a.b.ts})
}
