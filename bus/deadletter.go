package bus

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Dead letters: a message that a stage could not process after a bounded
// number of tries is moved to deadletter.<agency>.<stage> with the reason,
// so that the stream it came from moves on. Ops list them; an admin replays
// (after a fix) or discards them.
const (
	// DeadLetterMaxAge is how long a dead letter is kept.
	DeadLetterMaxAge = 14 * 24 * time.Hour
	// DeadLetterMaxPerSubject bounds the dead letters kept per agency and
	// stage (the oldest go first): a broken agency cannot fill the disk.
	DeadLetterMaxPerSubject = 10000

	headerDeadReason  = "Samdrift-Dead-Reason"
	headerDeadSubject = "Samdrift-Dead-Subject"
	headerDeadTries   = "Samdrift-Dead-Deliveries"
)

// Stages that dead-letter messages.
const (
	StageRouter    = "router"
	StageStore     = "store"
	StageTicketing = "ticketing"
	StageDelivery  = "delivery"
	StageExport    = "export"
)

// DeadLetterSubject is where an agency's dead letters of a stage go. The
// provider's own (no agency) go to deadletter._provider.<stage>.
func DeadLetterSubject(agency, stage string) string {
	if agency == "" {
		agency = "_provider"
	}
	return "deadletter." + agency + "." + stage
}

// DeadLetter is one message a stage gave up on.
type DeadLetter struct {
	Seq        uint64    `json:"seq"`
	Agency     string    `json:"agency"`
	Stage      string    `json:"stage"`
	Reason     string    `json:"reason"`
	Subject    string    `json:"subject"` // where it was, and where a replay puts it
	Time       time.Time `json:"time"`
	Bytes      int       `json:"bytes"`
	Deliveries int       `json:"deliveries"`
}

// MoveToDeadLetter stores m (data and headers) as a dead letter of the
// agency and stage, with the reason. The caller then terminates m.
func (b *Bus) MoveToDeadLetter(ctx context.Context, agency, stage, reason string, m jetstream.Msg) error {
	hdr := nats.Header{}
	for k, v := range m.Headers() {
		hdr[k] = v
	}
	hdr.Set(headerDeadTries, strconv.Itoa(Deliveries(m)))
	return b.DeadLetter(ctx, agency, stage, reason, m.Subject(), m.Data(), hdr)
}

// DeadLetter stores data, published on subject, as a dead letter.
func (b *Bus) DeadLetter(ctx context.Context, agency, stage, reason, subject string, data []byte, hdr nats.Header) error {
	if hdr == nil {
		hdr = nats.Header{}
	}
	if len(reason) > 1024 {
		reason = reason[:1024] + "…"
	}
	hdr.Set(headerDeadReason, strings.ToValidUTF8(strings.NewReplacer("\r", " ", "\n", " ").Replace(reason), "?"))
	hdr.Set(headerDeadSubject, subject)
	msg := &nats.Msg{Subject: DeadLetterSubject(agency, stage), Data: data, Header: hdr}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := b.Publish(pctx, msg, ""); err != nil {
		return err
	}
	if agency == "" {
		agency = "_provider"
	}
	b.deadLetters.WithLabelValues(stage, agency).Inc()
	return nil
}

// DeadLetters lists the dead letters of an agency ("" for all), oldest
// first, at most limit (0: all kept).
func (b *Bus) DeadLetters(ctx context.Context, agency string, limit int) ([]DeadLetter, error) {
	filter := "deadletter.>"
	if agency != "" {
		filter = "deadletter." + agency + ".*"
	}
	msgs, err := b.Messages(ctx, StreamDeadLetter, filter, limit)
	if err != nil {
		return nil, err
	}
	out := make([]DeadLetter, len(msgs))
	for i, m := range msgs {
		out[i] = deadLetterOf(m)
	}
	return out, nil
}

// GetDeadLetter returns one dead letter with its data.
func (b *Bus) GetDeadLetter(ctx context.Context, seq uint64) (DeadLetter, []byte, error) {
	s, err := b.js.Stream(ctx, StreamDeadLetter)
	if err != nil {
		return DeadLetter{}, nil, err
	}
	m, err := s.GetMsg(ctx, seq)
	if err != nil {
		return DeadLetter{}, nil, fmt.Errorf("dead letter %d: %w", seq, err)
	}
	return deadLetterOf(m), m.Data, nil
}

// ReplayDeadLetter puts a dead letter back on the subject it came from (to
// be processed again, after a fix) and removes it.
func (b *Bus) ReplayDeadLetter(ctx context.Context, seq uint64) (DeadLetter, error) {
	s, err := b.js.Stream(ctx, StreamDeadLetter)
	if err != nil {
		return DeadLetter{}, err
	}
	m, err := s.GetMsg(ctx, seq)
	if err != nil {
		return DeadLetter{}, fmt.Errorf("dead letter %d: %w", seq, err)
	}
	dl := deadLetterOf(m)
	hdr := nats.Header{}
	for k, v := range m.Header {
		if k != headerDeadReason && k != headerDeadSubject && k != headerDeadTries {
			hdr[k] = v
		}
	}
	if _, err := b.Publish(ctx, &nats.Msg{Subject: dl.Subject, Data: m.Data, Header: hdr}, "replay-"+strconv.FormatUint(seq, 10)); err != nil {
		return dl, err
	}
	return dl, s.DeleteMsg(ctx, seq)
}

// DiscardDeadLetter removes a dead letter for good.
func (b *Bus) DiscardDeadLetter(ctx context.Context, seq uint64) (DeadLetter, error) {
	s, err := b.js.Stream(ctx, StreamDeadLetter)
	if err != nil {
		return DeadLetter{}, err
	}
	m, err := s.GetMsg(ctx, seq)
	if err != nil {
		return DeadLetter{}, fmt.Errorf("dead letter %d: %w", seq, err)
	}
	return deadLetterOf(m), s.DeleteMsg(ctx, seq)
}

func deadLetterOf(m *jetstream.RawStreamMsg) DeadLetter {
	dl := DeadLetter{Seq: m.Sequence, Time: m.Time, Bytes: len(m.Data),
		Reason: m.Header.Get(headerDeadReason), Subject: m.Header.Get(headerDeadSubject)}
	dl.Deliveries, _ = strconv.Atoi(m.Header.Get(headerDeadTries))
	if parts := strings.Split(m.Subject, "."); len(parts) == 3 {
		dl.Agency, dl.Stage = parts[1], parts[2]
		if dl.Agency == "_provider" {
			dl.Agency = ""
		}
	}
	return dl
}
