package bus

import (
	"fmt"

	"github.com/prometheus/prometheus/prompb"
)

// MaxDecodedBatch bounds the decoded size of one metrics batch.
const MaxDecodedBatch = 64 << 20

// EncodeMetrics encodes a metrics batch as on the bus: a zstd-compressed
// Prometheus remote-write 1.0 WriteRequest (see compress.go).
func EncodeMetrics(wr *prompb.WriteRequest) ([]byte, error) {
	raw, err := wr.Marshal()
	if err != nil {
		return nil, fmt.Errorf("marshal write request: %w", err)
	}
	return compress(nil, raw), nil
}

// DecodeMetrics decodes a metrics batch from the bus (zstd, or snappy as a
// remote_write body) into wr (reset first).
func DecodeMetrics(b []byte, wr *prompb.WriteRequest) error {
	raw, err := decompress(nil, b)
	if err != nil {
		return err
	}
	wr.Reset()
	if err := wr.Unmarshal(raw); err != nil {
		return fmt.Errorf("decode write request: %w", err)
	}
	return nil
}
