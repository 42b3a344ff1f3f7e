package bus

import (
	"bytes"
	"fmt"
	"runtime"

	"github.com/golang/snappy"
	"github.com/klauspost/compress/zstd"
)

// Metrics batches on the bus are compressed with zstd at its fastest
// level: about a third of snappy's size for remote-write requests (their
// label text repeats), which is a third of JetStream's writes, disk and
// block cache (the server keeps ten seconds of writes in memory), for a
// few per cent more CPU (docs/benchmarks.md). Decoding also takes snappy
// — what collectors forward as senders sent it, and what older versions
// stored — told apart by zstd's magic number, which no valid snappy block
// starts with.
var (
	zstdEncoder = mustZstdEncoder()
	zstdDecoder = mustZstdDecoder()
	zstdMagic   = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

func mustZstdEncoder() *zstd.Encoder {
	e, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest),
		zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)), zstd.WithWindowSize(1<<20))
	if err != nil {
		panic(err)
	}
	return e
}

func mustZstdDecoder() *zstd.Decoder {
	d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(MaxDecodedBatch))
	if err != nil {
		panic(err)
	}
	return d
}

// compress appends the compressed raw to dst[:0].
func compress(dst, raw []byte) []byte { return zstdEncoder.EncodeAll(raw, dst[:0]) }

// decompress decompresses b (zstd or snappy) into buf's storage, refusing
// more than MaxDecodedBatch bytes.
func decompress(buf, b []byte) ([]byte, error) {
	if bytes.HasPrefix(b, zstdMagic) {
		var h zstd.Header
		if err := h.Decode(b); err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		// The frame says its size (Samdrift's always do, but for an empty
		// batch); the decoder refuses more than the limit in any case.
		if h.HasFCS && h.FrameContentSize > MaxDecodedBatch {
			return nil, fmt.Errorf("batch of %d bytes decoded exceeds the limit of %d", h.FrameContentSize, MaxDecodedBatch)
		}
		if uint64(cap(buf)) < h.FrameContentSize {
			buf = make([]byte, 0, h.FrameContentSize+h.FrameContentSize/4)
		}
		out, err := zstdDecoder.DecodeAll(b, buf[:0])
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		return out, nil
	}
	n, err := snappy.DecodedLen(b)
	if err != nil {
		return nil, fmt.Errorf("snappy: %w", err)
	}
	if n > MaxDecodedBatch {
		return nil, fmt.Errorf("batch of %d bytes decoded exceeds the limit of %d", n, MaxDecodedBatch)
	}
	if cap(buf) < n {
		buf = make([]byte, n+n/4)
	}
	out, err := snappy.Decode(buf[:cap(buf)], b)
	if err != nil {
		return nil, fmt.Errorf("snappy: %w", err)
	}
	return out, nil
}
