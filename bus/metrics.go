package bus

import (
	"fmt"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
)

// MaxDecodedBatch bounds the decoded size of one metrics batch.
const MaxDecodedBatch = 64 << 20

// EncodeMetrics encodes a metrics batch as on the bus: a snappy-compressed
// Prometheus remote-write 1.0 WriteRequest, exactly a remote_write body.
func EncodeMetrics(wr *prompb.WriteRequest) ([]byte, error) {
	raw, err := wr.Marshal()
	if err != nil {
		return nil, fmt.Errorf("marshal write request: %w", err)
	}
	return snappy.Encode(nil, raw), nil
}

// DecodeMetrics decodes a metrics batch from the bus into wr (reset first).
func DecodeMetrics(b []byte, wr *prompb.WriteRequest) error {
	n, err := snappy.DecodedLen(b)
	if err != nil {
		return fmt.Errorf("snappy: %w", err)
	}
	if n > MaxDecodedBatch {
		return fmt.Errorf("batch of %d bytes exceeds the limit of %d", n, MaxDecodedBatch)
	}
	raw, err := snappy.Decode(nil, b)
	if err != nil {
		return fmt.Errorf("snappy: %w", err)
	}
	wr.Reset()
	if err := wr.Unmarshal(raw); err != nil {
		return fmt.Errorf("decode write request: %w", err)
	}
	return nil
}
