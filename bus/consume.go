package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ConsumerSpec describes a durable pull consumer of a stream.
type ConsumerSpec struct {
	Stream  string
	Durable string
	// Filter restricts the consumer to one subject (wildcards allowed).
	Filter string
	// AckWait is how long a message handed out stays with its consumer
	// without an ack or a progress report; after it JetStream hands it out
	// again (a crashed process's messages come back after this).
	AckWait time.Duration
	// MaxAckPending bounds the messages handed out and not yet acked.
	MaxAckPending int
	// InactiveThreshold removes the consumer after that long without a
	// reader (0: never).
	InactiveThreshold time.Duration
}

func (s ConsumerSpec) config() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:           s.Durable,
		FilterSubject:     s.Filter,
		AckPolicy:         jetstream.AckExplicitPolicy,
		AckWait:           s.AckWait,
		MaxAckPending:     s.MaxAckPending,
		InactiveThreshold: s.InactiveThreshold,
		DeliverPolicy:     jetstream.DeliverAllPolicy,
	}
}

// EnsureConsumer creates the consumer, or updates it to spec. Messages
// published from then on are kept for it.
func (b *Bus) EnsureConsumer(ctx context.Context, spec ConsumerSpec) (jetstream.Consumer, error) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := b.js.CreateOrUpdateConsumer(cctx, spec.Stream, spec.config())
	if err != nil {
		return nil, fmt.Errorf("consumer %s of %s: %w", spec.Durable, spec.Stream, err)
	}
	return c, nil
}

// DeleteConsumer removes a durable consumer; a missing one is no error.
func (b *Bus) DeleteConsumer(ctx context.Context, stream, durable string) error {
	err := b.js.DeleteConsumer(ctx, stream, durable)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil
	}
	return err
}

// ConsumerNames lists the durable consumers of a stream.
func (b *Bus) ConsumerNames(ctx context.Context, stream string) ([]string, error) {
	s, err := b.js.Stream(ctx, stream)
	if err != nil {
		return nil, err
	}
	var out []string
	names := s.ConsumerNames(ctx)
	for n := range names.Name() {
		out = append(out, n)
	}
	return out, names.Err()
}

// StreamState returns the message count and bytes of a stream, optionally
// only of the subjects matching filter (then Messages counts those).
func (b *Bus) StreamState(ctx context.Context, stream, filter string) (messages, bytes uint64, err error) {
	s, err := b.js.Stream(ctx, stream)
	if err != nil {
		return 0, 0, err
	}
	var opts []jetstream.StreamInfoOpt
	if filter != "" {
		opts = append(opts, jetstream.WithSubjectFilter(filter))
	}
	info, err := s.Info(ctx, opts...)
	if err != nil {
		return 0, 0, err
	}
	if filter != "" {
		var n uint64
		for _, c := range info.State.Subjects {
			n += c
		}
		return n, info.State.Bytes, nil
	}
	return info.State.Msgs, info.State.Bytes, nil
}

// PurgeSubject deletes every message of a stream on subjects matching filter.
func (b *Bus) PurgeSubject(ctx context.Context, stream, filter string) error {
	s, err := b.js.Stream(ctx, stream)
	if err != nil {
		return err
	}
	return s.Purge(ctx, jetstream.WithPurgeSubject(filter))
}

// Messages reads the messages of a stream on subjects matching filter,
// oldest first, at most limit (0: all). For tools, tests and the dead
// letter listing; components consume with Consume.
func (b *Bus) Messages(ctx context.Context, stream, filter string, limit int) ([]*jetstream.RawStreamMsg, error) {
	s, err := b.js.Stream(ctx, stream)
	if err != nil {
		return nil, err
	}
	var out []*jetstream.RawStreamMsg
	for seq := uint64(1); limit <= 0 || len(out) < limit; {
		m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(filter))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return nil, err
		}
		out = append(out, m)
		seq = m.Sequence + 1
	}
	return out, nil
}

// Handler processes one batch of messages; it acks, naks or terminates
// each one. It runs on one goroutine per Consume call.
type Handler func(ctx context.Context, batch []jetstream.Msg)

// Consume creates the consumer (see EnsureConsumer) and hands its messages
// to handle in batches of at most maxBatch, in stream order, one batch at a
// time, until ctx ends. It returns only then: while NATS is unreachable it
// keeps trying to set the consumer up again (a component must outlive an
// outage of the bus). Messages fetched but not handled when ctx ends are
// handed out again after AckWait.
func (b *Bus) Consume(ctx context.Context, spec ConsumerSpec, maxBatch int, logger *slog.Logger, handle Handler) error {
	if maxBatch <= 0 {
		maxBatch = 1
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	backoff := 250 * time.Millisecond
	for ctx.Err() == nil {
		err := b.consumeOnce(ctx, spec, maxBatch, logger, handle)
		if ctx.Err() != nil {
			break
		}
		logger.Warn("consumer interrupted; setting it up again", "consumer", spec.Durable, "retry_in", backoff, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
	return nil
}

func (b *Bus) consumeOnce(ctx context.Context, spec ConsumerSpec, maxBatch int, logger *slog.Logger, handle Handler) error {
	cons, err := b.EnsureConsumer(ctx, spec)
	if err != nil {
		return err
	}
	ch := make(chan jetstream.Msg, maxBatch)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		select {
		case ch <- m:
		case <-ctx.Done():
		}
	}, jetstream.PullMaxMessages(2*maxBatch), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		if !errors.Is(err, jetstream.ErrNoHeartbeat) && ctx.Err() == nil {
			logger.Debug("consumer", "consumer", spec.Durable, "err", err)
		}
	}))
	if err != nil {
		return fmt.Errorf("consume %s: %w", spec.Durable, err)
	}
	defer cc.Stop()
	batch := make([]jetstream.Msg, 0, maxBatch)
	for {
		batch = batch[:0]
		select {
		case <-ctx.Done():
			return nil
		case <-cc.Closed():
			return errors.New("consumer closed")
		case m := <-ch:
			batch = append(batch, m)
		}
	drain:
		for len(batch) < maxBatch {
			select {
			case m := <-ch:
				batch = append(batch, m)
			default:
				break drain
			}
		}
		handle(ctx, batch)
	}
}

// Redelivered reports whether JetStream hands m out a second time or more.
func Redelivered(m jetstream.Msg) bool {
	md, err := m.Metadata()
	return err == nil && md.NumDelivered > 1
}

// Deliveries is how often JetStream has handed m out (1 the first time).
func Deliveries(m jetstream.Msg) int {
	md, err := m.Metadata()
	if err != nil {
		return 1
	}
	return int(md.NumDelivered)
}

// StreamSeq is m's position in its stream (0 if unknown).
func StreamSeq(m jetstream.Msg) uint64 {
	md, err := m.Metadata()
	if err != nil {
		return 0
	}
	return md.Sequence.Stream
}
