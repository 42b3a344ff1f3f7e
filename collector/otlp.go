package collector

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"mime"
	"net/http"
	"sort"
	"time"

	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage"
	otlptranslator "github.com/prometheus/prometheus/storage/remote/otlptranslator/prometheusremotewrite"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
)

// OTLP content types.
const (
	otlpProto = "application/x-protobuf"
	otlpJSON  = "application/json"
)

// DecodeOTLP decodes an OTLP/HTTP metrics export request (protobuf or JSON,
// optionally gzip-compressed) and translates it to Prometheus series with
// Prometheus's own OTLP translator, with Prometheus's default settings:
// metric names with unit and type suffixes, resource attributes in
// target_info, job and instance from service.name/service.instance.id.
func DecodeOTLP(contentType, contentEncoding string, body []byte, maxDecoded int) (*prompb.WriteRequest, string, *httpError) {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil || (mt != otlpProto && mt != otlpJSON) {
		return nil, "", errorf(http.StatusUnsupportedMediaType, "unsupported Content-Type %q: OTLP/HTTP needs %s or %s", contentType, otlpProto, otlpJSON)
	}
	switch contentEncoding {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return nil, "", errorf(http.StatusBadRequest, "body is not gzip-compressed: %v", err)
		}
		raw, err := io.ReadAll(io.LimitReader(zr, int64(maxDecoded)+1))
		if err != nil {
			return nil, "", errorf(http.StatusBadRequest, "body is not gzip-compressed: %v", err)
		}
		if len(raw) > maxDecoded {
			return nil, "", errorf(http.StatusRequestEntityTooLarge, "decompressed body exceeds the limit of %d bytes", maxDecoded)
		}
		body = raw
	default:
		return nil, "", errorf(http.StatusUnsupportedMediaType, "unsupported Content-Encoding %q: want gzip or none", contentEncoding)
	}
	req := pmetricotlp.NewExportRequest()
	protocol := "otlp_protobuf"
	if mt == otlpJSON {
		protocol = "otlp_json"
		err = req.UnmarshalJSON(body)
	} else {
		err = req.UnmarshalProto(body)
	}
	if err != nil {
		return nil, "", errorf(http.StatusBadRequest, "malformed OTLP %s: %v", map[string]string{otlpJSON: "JSON", otlpProto: "protobuf"}[mt], err)
	}
	app := &collectingAppender{index: map[uint64]int{}}
	conv := otlptranslator.NewPrometheusConverter(app)
	cfg := config.DefaultOTLPConfig
	_, err = conv.FromMetrics(context.Background(), req.Metrics(), otlptranslator.Settings{
		AddMetricSuffixes:                    cfg.TranslationStrategy.ShouldAddSuffixes(),
		AllowUTF8:                            !cfg.TranslationStrategy.ShouldEscape(),
		PromoteResourceAttributes:            otlptranslator.NewPromoteResourceAttributes(cfg),
		KeepIdentifyingResourceAttributes:    cfg.KeepIdentifyingResourceAttributes,
		LabelNameUnderscoreSanitization:      cfg.LabelNameUnderscoreSanitization,
		LabelNamePreserveMultipleUnderscores: cfg.LabelNamePreserveMultipleUnderscores,
		LookbackDelta:                        defaultLookback,
	})
	if err != nil {
		return nil, "", errorf(http.StatusBadRequest, "translate OTLP metrics: %v", err)
	}
	return &prompb.WriteRequest{Timeseries: app.series}, protocol, nil
}

const defaultLookback = 5 * time.Minute

// collectingAppender gathers what the OTLP translator appends, one series
// per label set with its samples in order.
type collectingAppender struct {
	series []prompb.TimeSeries
	index  map[uint64]int
}

func (c *collectingAppender) Append(_ storage.SeriesRef, ls labels.Labels, _, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram, _ storage.AppendV2Options) (storage.SeriesRef, error) {
	hash := ls.Hash()
	i, ok := c.index[hash]
	if !ok {
		i = len(c.series)
		c.index[hash] = i
		c.series = append(c.series, prompb.TimeSeries{Labels: prompb.FromLabels(ls, nil)})
	}
	ts := &c.series[i]
	switch {
	case fh != nil:
		ts.Histograms = append(ts.Histograms, prompb.FromFloatHistogram(t, fh))
	case h != nil:
		ts.Histograms = append(ts.Histograms, prompb.FromIntHistogram(t, h))
	default:
		ts.Samples = append(ts.Samples, prompb.Sample{Value: v, Timestamp: t})
	}
	return storage.SeriesRef(hash | 1), nil
}

func (c *collectingAppender) Commit() error   { return nil }
func (c *collectingAppender) Rollback() error { return nil }

// OTLP is the handler of POST /otlp/v1/metrics.
func (p *Push) OTLP() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, id, herr := p.agencyOf(r)
		if herr != nil {
			writeError(w, herr)
			return
		}
		body, herr := p.readBody(w, r)
		if herr != nil {
			writeError(w, herr)
			return
		}
		wr, protocol, herr := DecodeOTLP(r.Header.Get("Content-Type"), r.Header.Get("Content-Encoding"), body, int(p.opts.MaxBodyBytes))
		if herr != nil {
			writeError(w, herr)
			return
		}
		sortSamples(wr)
		if _, herr := p.ingest(r.Context(), a, id.Credential, protocol, wr); herr != nil {
			writeError(w, herr)
			return
		}
		resp := pmetricotlp.NewExportResponse()
		var out []byte
		var err error
		if protocol == "otlp_json" {
			w.Header().Set("Content-Type", otlpJSON)
			out, err = resp.MarshalJSON()
		} else {
			w.Header().Set("Content-Type", otlpProto)
			out, err = resp.MarshalProto()
		}
		if err != nil {
			writeError(w, errorf(http.StatusInternalServerError, "encode response: %v", errors.Unwrap(err)))
			return
		}
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(out)
	})
}

// sortSamples orders each series' samples by time: OTLP data points of one
// series may arrive in any order.
func sortSamples(wr *prompb.WriteRequest) {
	for i := range wr.Timeseries {
		ts := &wr.Timeseries[i]
		sort.SliceStable(ts.Samples, func(a, b int) bool { return ts.Samples[a].Timestamp < ts.Samples[b].Timestamp })
		sort.SliceStable(ts.Histograms, func(a, b int) bool { return ts.Histograms[a].Timestamp < ts.Histograms[b].Timestamp })
	}
}
