package collector

import (
	"bytes"
	"mime"
	"net/http"
	"strconv"
	"sync"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"

	"github.com/samdrift/samdrift/bus"
)

// Remote-write protobuf message names, as in the Content-Type proto parameter.
const (
	rw1Message = "prometheus.WriteRequest"
	rw2Message = "io.prometheus.write.v2.Request"
)

// DecodeRemoteWrite decodes a remote_write body (1.0 or 2.0, by its content
// type) into a remote-write 1.0 request. maxDecoded bounds the decompressed
// size. The error carries the HTTP status the sender should get.
func DecodeRemoteWrite(contentType, contentEncoding string, body []byte, maxDecoded int) (*prompb.WriteRequest, string, *httpError) {
	msgType := rw1Message
	if contentType != "" {
		mt, params, err := mime.ParseMediaType(contentType)
		if err != nil || mt != "application/x-protobuf" {
			return nil, "", errorf(http.StatusUnsupportedMediaType, "unsupported Content-Type %q: remote write needs application/x-protobuf", contentType)
		}
		if p, ok := params["proto"]; ok {
			msgType = p
		}
	}
	if msgType != rw1Message && msgType != rw2Message {
		return nil, "", errorf(http.StatusUnsupportedMediaType, "unsupported remote write message %q: want %s or %s", msgType, rw1Message, rw2Message)
	}
	if contentEncoding != "" && contentEncoding != "snappy" {
		return nil, "", errorf(http.StatusUnsupportedMediaType, "unsupported Content-Encoding %q: remote write bodies are snappy-compressed", contentEncoding)
	}
	n, err := snappy.DecodedLen(body)
	if err != nil {
		return nil, "", errorf(http.StatusBadRequest, "body is not snappy-compressed: %v", err)
	}
	if n > maxDecoded {
		return nil, "", errorf(http.StatusRequestEntityTooLarge, "decompressed body of %d bytes exceeds the limit of %d bytes", n, maxDecoded)
	}
	raw, err := snappy.Decode(nil, body)
	if err != nil {
		return nil, "", errorf(http.StatusBadRequest, "body is not snappy-compressed: %v", err)
	}
	if msgType == rw1Message {
		var wr prompb.WriteRequest
		if err := wr.Unmarshal(raw); err != nil {
			return nil, "", errorf(http.StatusBadRequest, "malformed remote write 1.0 protobuf: %v", err)
		}
		return &wr, "remote_write_1", nil
	}
	var req writev2.Request
	if err := req.Unmarshal(raw); err != nil {
		return nil, "", errorf(http.StatusBadRequest, "malformed remote write 2.0 protobuf: %v", err)
	}
	wr, herr := fromV2(&req)
	if herr != nil {
		return nil, "", herr
	}
	return wr, "remote_write_2", nil
}

// fromV2 converts a remote-write 2.0 request to 1.0 form. Metadata and
// exemplars are not kept.
func fromV2(req *writev2.Request) (*prompb.WriteRequest, *httpError) {
	wr := &prompb.WriteRequest{Timeseries: make([]prompb.TimeSeries, 0, len(req.Timeseries))}
	var b labels.ScratchBuilder
	for _, ts := range req.Timeseries {
		ls, err := ts.ToLabels(&b, req.Symbols)
		if err != nil {
			return nil, errorf(http.StatusBadRequest, "remote write 2.0 series: %v", err)
		}
		out := prompb.TimeSeries{Labels: prompb.FromLabels(ls, nil)}
		for _, s := range ts.Samples {
			out.Samples = append(out.Samples, prompb.Sample{Value: s.Value, Timestamp: s.Timestamp})
		}
		for _, h := range ts.Histograms {
			if h.IsFloatHistogram() {
				out.Histograms = append(out.Histograms, prompb.FromFloatHistogram(h.Timestamp, h.ToFloatHistogram()))
			} else {
				out.Histograms = append(out.Histograms, prompb.FromIntHistogram(h.Timestamp, h.ToIntHistogram()))
			}
		}
		wr.Timeseries = append(wr.Timeseries, out)
	}
	return wr, nil
}

// rw1Decoder decodes remote write 1.0 bodies on the hot path without
// allocating (pooled): the body is already the bus's metrics encoding, so
// once checked it is published as it came.
type rw1Decoder struct {
	dec bus.MetricsDecoder
	wr  prompb.WriteRequest
	buf bytes.Buffer
}

var rw1Decoders = sync.Pool{New: func() any { return &rw1Decoder{} }}

// isRW1 reports whether a request is remote write 1.0, snappy-compressed.
func isRW1(contentType, contentEncoding string) bool {
	if contentEncoding != "snappy" {
		return false
	}
	if contentType == "" || contentType == "application/x-protobuf" {
		return true
	}
	mt, params, err := mime.ParseMediaType(contentType)
	return err == nil && mt == "application/x-protobuf" && (params["proto"] == "" || params["proto"] == rw1Message)
}

// RemoteWrite is the handler of POST /api/v1/push: remote write 1.0 and
// 2.0, snappy-compressed protobuf.
func (p *Push) RemoteWrite() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, id, herr := p.agencyOf(r)
		if herr != nil {
			writeError(w, herr)
			return
		}
		if isRW1(r.Header.Get("Content-Type"), r.Header.Get("Content-Encoding")) {
			d := rw1Decoders.Get().(*rw1Decoder)
			defer rw1Decoders.Put(d)
			body, herr := p.readBodyInto(w, r, &d.buf)
			if herr != nil {
				writeError(w, herr)
				return
			}
			if n, err := snappy.DecodedLen(body); err != nil {
				writeError(w, errorf(http.StatusBadRequest, "body is not snappy-compressed: %v", err))
				return
			} else if n > int(p.opts.MaxBodyBytes) {
				writeError(w, errorf(http.StatusRequestEntityTooLarge, "decompressed body of %d bytes exceeds the limit of %d bytes", n, p.opts.MaxBodyBytes))
				return
			}
			if err := d.dec.Decode(body, &d.wr); err != nil {
				writeError(w, errorf(http.StatusBadRequest, "malformed remote write 1.0 protobuf: %v", err))
				return
			}
			if _, herr := p.ingestRaw(r.Context(), a, id.Credential, "remote_write_1", &d.wr, body); herr != nil {
				writeError(w, herr)
				return
			}
			w.WriteHeader(http.StatusNoContent)
			return
		}
		body, herr := p.readBody(w, r)
		if herr != nil {
			writeError(w, herr)
			return
		}
		wr, protocol, herr := DecodeRemoteWrite(r.Header.Get("Content-Type"), r.Header.Get("Content-Encoding"), body, int(p.opts.MaxBodyBytes))
		if herr != nil {
			writeError(w, herr)
			return
		}
		accepted, herr := p.ingest(r.Context(), a, id.Credential, protocol, wr)
		if herr != nil {
			writeError(w, herr)
			return
		}
		if protocol == "remote_write_2" {
			// Remote write 2.0 senders read what was written from these.
			samples, hists := 0, 0
			for _, ts := range wr.Timeseries {
				samples += len(ts.Samples)
				hists += len(ts.Histograms)
			}
			if accepted < samples+hists {
				samples = accepted
				hists = 0
			}
			w.Header().Set("X-Prometheus-Remote-Write-Samples-Written", strconv.Itoa(samples))
			w.Header().Set("X-Prometheus-Remote-Write-Histograms-Written", strconv.Itoa(hists))
			w.Header().Set("X-Prometheus-Remote-Write-Exemplars-Written", "0")
		}
		w.WriteHeader(http.StatusNoContent)
	})
}
