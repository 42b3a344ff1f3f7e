package bus

import (
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"

	"github.com/golang/snappy"

	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
)

func randomRequest(r *rand.Rand) *prompb.WriteRequest {
	wr := &prompb.WriteRequest{}
	for i := range r.IntN(50) + 1 {
		ts := prompb.TimeSeries{}
		for j := range r.IntN(6) + 1 {
			ts.Labels = append(ts.Labels, prompb.Label{Name: "l" + strconv.Itoa(j), Value: strconv.Itoa(r.IntN(1000)) + "-" + strconv.Itoa(i)})
		}
		for range r.IntN(4) {
			ts.Samples = append(ts.Samples, prompb.Sample{Value: r.NormFloat64(), Timestamp: r.Int64N(1 << 42)})
		}
		if r.IntN(10) == 0 {
			ts.Exemplars = append(ts.Exemplars, prompb.Exemplar{Labels: []prompb.Label{{Name: "trace_id", Value: "abc"}}, Value: 1, Timestamp: 5})
		}
		if r.IntN(10) == 0 {
			ts.Histograms = append(ts.Histograms, prompb.Histogram{Count: &prompb.Histogram_CountInt{CountInt: 3}, Sum: 2, Schema: 1,
				ZeroCount: &prompb.Histogram_ZeroCountInt{ZeroCountInt: 1}, Timestamp: 7, PositiveSpans: []prompb.BucketSpan{{Offset: 0, Length: 1}}, PositiveDeltas: []int64{2}})
		}
		wr.Timeseries = append(wr.Timeseries, ts)
	}
	if r.IntN(3) == 0 {
		wr.Metadata = append(wr.Metadata, prompb.MetricMetadata{MetricFamilyName: "m", Help: "h", Type: prompb.MetricMetadata_COUNTER})
	}
	return wr
}

// TestMetricsDecoderMatchesProtobuf: the zero-allocation decoder reads
// exactly what the generated protobuf code reads, call after call with one
// decoder and one reused request.
func TestMetricsDecoderMatchesProtobuf(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var d MetricsDecoder
	var got prompb.WriteRequest
	for range 300 {
		want := randomRequest(r)
		data, err := EncodeMetrics(want)
		require.NoError(t, err)
		require.NoError(t, d.Decode(data, &got))
		var ref prompb.WriteRequest
		raw, err := decompress(nil, data)
		require.NoError(t, err)
		require.NoError(t, ref.Unmarshal(raw))
		require.Len(t, got.Timeseries, len(ref.Timeseries))
		for i := range ref.Timeseries {
			require.Equal(t, ref.Timeseries[i].Labels, got.Timeseries[i].Labels)
			require.Len(t, got.Timeseries[i].Samples, len(ref.Timeseries[i].Samples))
			for j, s := range ref.Timeseries[i].Samples {
				require.Equal(t, s, got.Timeseries[i].Samples[j])
			}
			require.Len(t, got.Timeseries[i].Exemplars, len(ref.Timeseries[i].Exemplars))
			require.Len(t, got.Timeseries[i].Histograms, len(ref.Timeseries[i].Histograms))
			require.NotEmpty(t, d.Keys[i], "labels are contiguous as marshalled")
		}
		require.Len(t, got.Metadata, len(ref.Metadata))
		// Re-encoding what was decoded gives the same request back.
		again, err := (&MetricsEncoder{}).Encode(&got)
		require.NoError(t, err)
		var back prompb.WriteRequest
		require.NoError(t, DecodeMetrics(again, &back))
		require.Equal(t, ref.Timeseries[0].Labels, back.Timeseries[0].Labels)
		// Callers filter series in place and insert labels (the router
		// does): the next decode must not be disturbed by it.
		kept := got.Timeseries[:0]
		for i, ts := range got.Timeseries {
			if i%2 == 1 {
				ts.Labels = slices.Insert(ts.Labels, 0, prompb.Label{Name: "agency", Value: "x"}, prompb.Label{Name: "b", Value: "y"})
				kept = append(kept, ts)
			}
		}
		got.Timeseries = kept
	}
	// Same labels, same key; different labels, different key.
	one := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
		{Labels: []prompb.Label{{Name: "a", Value: "1"}}, Samples: []prompb.Sample{{Value: 1, Timestamp: 1}}},
		{Labels: []prompb.Label{{Name: "a", Value: "1"}}, Samples: []prompb.Sample{{Value: 2, Timestamp: 2}}},
		{Labels: []prompb.Label{{Name: "a", Value: "2"}}, Samples: []prompb.Sample{{Value: 2, Timestamp: 2}}},
	}}
	data, _ := EncodeMetrics(one)
	require.NoError(t, d.Decode(data, &got))
	require.Equal(t, d.Keys[0], d.Keys[1])
	require.NotEqual(t, d.Keys[0], d.Keys[2])
	require.Error(t, d.Decode([]byte("not snappy"), &got))
	require.Error(t, d.DecodeRaw([]byte{0x0a, 0x05, 0x01}, &got))
}

func TestMetricsDecoderAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts mean nothing under the race detector (sync.Pool drops items at random); make test runs this package without it too")
	}
	wr := randomRequest(rand.New(rand.NewPCG(3, 4)))
	for i := range wr.Timeseries {
		wr.Timeseries[i].Exemplars, wr.Timeseries[i].Histograms = nil, nil
	}
	wr.Metadata = nil
	data, _ := EncodeMetrics(wr)
	var d MetricsDecoder
	var got prompb.WriteRequest
	require.NoError(t, d.Decode(data, &got))
	allocs := testing.AllocsPerRun(100, func() { _ = d.Decode(data, &got) })
	require.Zero(t, allocs, "steady-state decoding allocates nothing")
}

func FuzzMetricsDecoder(f *testing.F) {
	r := rand.New(rand.NewPCG(5, 6))
	for range 5 {
		raw, _ := randomRequest(r).Marshal()
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var d MetricsDecoder
		var got prompb.WriteRequest
		err := d.DecodeRaw(raw, &got)
		var ref prompb.WriteRequest
		refErr := ref.Unmarshal(raw)
		if err == nil && refErr == nil {
			require.Len(t, got.Timeseries, len(ref.Timeseries))
			for i := range ref.Timeseries {
				require.Len(t, got.Timeseries[i].Labels, len(ref.Timeseries[i].Labels))
				for j, l := range ref.Timeseries[i].Labels {
					require.Equal(t, l.Name, got.Timeseries[i].Labels[j].Name)
					require.Equal(t, l.Value, got.Timeseries[i].Labels[j].Value)
				}
				require.Len(t, got.Timeseries[i].Samples, len(ref.Timeseries[i].Samples))
			}
		}
	})
}

// TestDecompressBounds: batches are zstd on the bus and snappy as senders
// send them, both decoded; a small frame that would decode to more than
// MaxDecodedBatch is refused before it is decoded.
func TestDecompressBounds(t *testing.T) {
	wr := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{Labels: []prompb.Label{{Name: "__name__", Value: "m"}}, Samples: []prompb.Sample{{Value: 1, Timestamp: 2}}}}}
	raw, err := wr.Marshal()
	require.NoError(t, err)
	var d MetricsDecoder
	var got prompb.WriteRequest
	for name, data := range map[string][]byte{"zstd": compress(nil, raw), "snappy": snappy.Encode(nil, raw)} {
		require.NoError(t, d.Decode(data, &got), name)
		require.Equal(t, "m", got.Timeseries[0].Labels[0].Value, name)
	}
	bomb := compress(nil, make([]byte, MaxDecodedBatch+1))
	require.Less(t, len(bomb), 64<<10)
	err = d.Decode(bomb, &got)
	require.ErrorContains(t, err, "exceeds the limit")
}
