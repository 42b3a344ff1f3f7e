package bus

import (
	"errors"
	"math"
	"unsafe"

	"github.com/prometheus/prometheus/prompb"
	"google.golang.org/protobuf/encoding/protowire"
)

// MetricsDecoder decodes metrics batches (snappy-compressed remote-write
// 1.0 requests) on the hot path without allocating in steady state: it
// reuses its buffer and the request's slices, and label strings point into
// the buffer. They are valid only until the next Decode: a caller that
// keeps a label (a new TSDB series, a cache key) must copy it.
type MetricsDecoder struct {
	buf []byte
	// labels and samples are flat arenas the series' slices point into,
	// rebuilt on every decode: what the caller does to a request (filter
	// series, copy them around, insert labels) cannot corrupt the next.
	labels  []prompb.Label
	samples []prompb.Sample
	// Keys holds, per series of the last request, its encoded labels (a
	// stable key for per-series caches; "" when the labels were not
	// contiguous on the wire). Same validity as the labels.
	Keys []string
}

// Decode decompresses (zstd or snappy) and decodes b into wr, reusing
// wr's slices.
func (d *MetricsDecoder) Decode(b []byte, wr *prompb.WriteRequest) error {
	raw, err := decompress(d.buf, b)
	if err != nil {
		return err
	}
	if cap(raw) > cap(d.buf) {
		d.buf = raw[:0]
	}
	return d.DecodeRaw(raw, wr)
}

// DecodeRaw decodes an uncompressed request; raw must stay unchanged while
// wr's labels are in use.
func (d *MetricsDecoder) DecodeRaw(raw []byte, wr *prompb.WriteRequest) error {
	tss := wr.Timeseries[:0]
	wr.Metadata = wr.Metadata[:0]
	d.Keys = d.Keys[:0]
	d.labels, d.samples = d.labels[:0], d.samples[:0]
	for len(raw) > 0 {
		num, typ, n := protowire.ConsumeTag(raw)
		if n < 0 {
			return errBadProto
		}
		raw = raw[n:]
		if typ != protowire.BytesType || (num != 1 && num != 3) {
			n = protowire.ConsumeFieldValue(num, typ, raw)
			if n < 0 {
				return errBadProto
			}
			raw = raw[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(raw)
		if n < 0 {
			return errBadProto
		}
		raw = raw[n:]
		if num == 3 {
			var md prompb.MetricMetadata
			if err := md.Unmarshal(v); err != nil {
				return err
			}
			wr.Metadata = append(wr.Metadata, md)
			continue
		}
		tss = append(tss, prompb.TimeSeries{})
		ts := &tss[len(tss)-1]
		key, err := d.decodeSeries(v, ts)
		if err != nil {
			return err
		}
		d.Keys = append(d.Keys, key)
	}
	wr.Timeseries = tss
	return nil
}

var errBadProto = errors.New("invalid protobuf wire format")

func yolo(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// labelHeadroom is room left after each series' labels for the labels the
// router adds (agency, service) without reallocating.
const labelHeadroom = 2

func (d *MetricsDecoder) decodeSeries(b []byte, ts *prompb.TimeSeries) (string, error) {
	start, end, contiguous := -1, -1, true
	l0, s0 := len(d.labels), len(d.samples)
	off := 0
	for off < len(b) {
		fieldStart := off
		num, typ, n := protowire.ConsumeTag(b[off:])
		if n < 0 {
			return "", errBadProto
		}
		off += n
		if typ != protowire.BytesType || num < 1 || num > 4 {
			n = protowire.ConsumeFieldValue(num, typ, b[off:])
			if n < 0 {
				return "", errBadProto
			}
			off += n
			continue
		}
		v, n := protowire.ConsumeBytes(b[off:])
		if n < 0 {
			return "", errBadProto
		}
		off += n
		switch num {
		case 1:
			l, err := decodeLabel(v)
			if err != nil {
				return "", err
			}
			d.labels = append(d.labels, l)
			if start < 0 {
				start = fieldStart
			} else if fieldStart != end {
				contiguous = false
			}
			end = off
		case 2:
			s, err := decodeSample(v)
			if err != nil {
				return "", err
			}
			d.samples = append(d.samples, s)
		case 3:
			var e prompb.Exemplar
			if err := e.Unmarshal(v); err != nil {
				return "", err
			}
			ts.Exemplars = append(ts.Exemplars, e)
		case 4:
			var h prompb.Histogram
			if err := h.Unmarshal(v); err != nil {
				return "", err
			}
			ts.Histograms = append(ts.Histograms, h)
		}
	}
	nl := len(d.labels)
	for range labelHeadroom {
		d.labels = append(d.labels, prompb.Label{})
	}
	ts.Labels = d.labels[l0:nl:len(d.labels)]
	ts.Samples = d.samples[s0:len(d.samples):len(d.samples)]
	if start < 0 || !contiguous {
		return "", nil
	}
	return yolo(b[start:end]), nil
}

func decodeLabel(b []byte) (prompb.Label, error) {
	var l prompb.Label
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return l, errBadProto
		}
		b = b[n:]
		if typ == protowire.BytesType && (num == 1 || num == 2) {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return l, errBadProto
			}
			b = b[n:]
			if num == 1 {
				l.Name = yolo(v)
			} else {
				l.Value = yolo(v)
			}
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return l, errBadProto
		}
		b = b[n:]
	}
	return l, nil
}

func decodeSample(b []byte) (prompb.Sample, error) {
	var s prompb.Sample
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return s, errBadProto
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.Fixed64Type:
			v, n := protowire.ConsumeFixed64(b)
			if n < 0 {
				return s, errBadProto
			}
			s.Value = math.Float64frombits(v)
			b = b[n:]
		case num == 2 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return s, errBadProto
			}
			s.Timestamp = int64(v)
			b = b[n:]
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return s, errBadProto
			}
			b = b[n:]
		}
	}
	return s, nil
}

// MetricsEncoder encodes metrics batches reusing its marshal buffer.
type MetricsEncoder struct {
	raw []byte
}

// Encode marshals and compresses wr into a new slice (it may be retained
// by an asynchronous publish).
func (e *MetricsEncoder) Encode(wr *prompb.WriteRequest) ([]byte, error) {
	return e.EncodeTo(nil, wr)
}

// EncodeTo marshals and compresses wr into dst's storage, grown if need
// be (a buffer the caller recycles once the publish is acknowledged).
func (e *MetricsEncoder) EncodeTo(dst []byte, wr *prompb.WriteRequest) ([]byte, error) {
	n := wr.Size()
	if cap(e.raw) < n {
		e.raw = make([]byte, n+n/4)
	}
	raw := e.raw[:n]
	if _, err := wr.MarshalToSizedBuffer(raw); err != nil {
		return nil, err
	}
	return compress(dst, raw), nil
}
