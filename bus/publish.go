package bus

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Publish stores msg in its stream and returns once JetStream has it
// (durable per the server's sync settings). A non-empty msgID makes a
// repeat within the stream's duplicate window a no-op; dup reports one.
func (b *Bus) Publish(ctx context.Context, msg *nats.Msg, msgID string) (dup bool, err error) {
	var opts []jetstream.PublishOpt
	if msgID != "" {
		opts = append(opts, jetstream.WithMsgID(msgID))
	}
	ack, err := b.js.PublishMsg(ctx, msg, opts...)
	if err != nil {
		return false, fmt.Errorf("publish to %s: %w", msg.Subject, err)
	}
	return ack.Duplicate, nil
}

// PublishAsync hands msg to JetStream without waiting; the future reports
// whether it was stored. At most a few thousand are in flight at once
// (the call blocks beyond that).
func (b *Bus) PublishAsync(msg *nats.Msg, msgID string) (jetstream.PubAckFuture, error) {
	var opts []jetstream.PublishOpt
	if msgID != "" {
		opts = append(opts, jetstream.WithMsgID(msgID))
	}
	return b.js.PublishMsgAsync(msg, opts...)
}

// PublishAll stores every message and waits until JetStream has confirmed
// each one, or ctx ends. Messages are in flight together, so a batch of
// many costs about one round trip. ids, if given, are their msgIDs.
func (b *Bus) PublishAll(ctx context.Context, msgs []*nats.Msg, ids []string) error {
	futs := make([]jetstream.PubAckFuture, 0, len(msgs))
	for i, m := range msgs {
		id := ""
		if i < len(ids) {
			id = ids[i]
		}
		f, err := b.PublishAsync(m, id)
		if err != nil {
			return fmt.Errorf("publish to %s: %w", m.Subject, err)
		}
		futs = append(futs, f)
	}
	for _, f := range futs {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("publish to %s: %w", f.Msg().Subject, err)
		case <-ctx.Done():
			return fmt.Errorf("publish to %s: %w", f.Msg().Subject, ctx.Err())
		}
	}
	return nil
}

// Notify publishes a core NATS message: not stored, delivered to whoever
// listens now (verdicts for a waiting push receiver).
func (b *Bus) Notify(subject string, data []byte) error {
	return b.nc.Publish(subject, data)
}

// Subscription is a core NATS subscription.
type Subscription interface {
	Unsubscribe() error
}

// Subscribe calls f for every core NATS message on subject.
func (b *Bus) Subscribe(subject string, f func(*nats.Msg)) (Subscription, error) {
	return b.nc.Subscribe(subject, f)
}

// ChanSubscribe delivers every core NATS message on subject to ch (tests
// and tools watching the bus).
func (b *Bus) ChanSubscribe(subject string, ch chan *nats.Msg) (Subscription, error) {
	return b.nc.ChanSubscribe(subject, ch)
}
