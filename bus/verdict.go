package bus

import (
	"encoding/json"
	"strings"
	"time"
)

// Header names Samdrift sets on bus messages.
const (
	// HeaderVerdict asks the router to publish its Verdict on a batch to
	// this subject, so that a push receiver can answer its sender with the
	// router's decision (accepted, rate limited, over a limit).
	HeaderVerdict = "Samdrift-Verdict"
	// HeaderThrough marks a metrics message whose samples the store of
	// the process that stored it appends in the request (the token of
	// that append; see store.Append): its consumer acks it without
	// appending it again. Only the router sets it.
	HeaderThrough = "Samdrift-Through"
)

// VerdictPrefix is the subject prefix verdicts may be published on; the
// router ignores any other reply subject.
const VerdictPrefix = "_SAMDRIFT.verdict."

// Verdict is the router's decision on one pushed batch.
type Verdict struct {
	// Status is the HTTP status the sender should get: 200 (all routed),
	// 400 (some or all samples refused for good, Message says why), 429
	// (rate limited, nothing routed; retry after RetryAfter).
	Status     int           `json:"status"`
	Message    string        `json:"message,omitempty"`
	RetryAfter time.Duration `json:"retry_after,omitempty"`
	// Accepted is the number of samples routed.
	Accepted int `json:"accepted"`
}

// Encode returns the verdict's wire form.
func (v Verdict) Encode() []byte {
	b, _ := json.Marshal(v)
	return b
}

// DecodeVerdict parses a verdict.
func DecodeVerdict(b []byte) (Verdict, error) {
	var v Verdict
	err := json.Unmarshal(b, &v)
	return v, err
}

// ValidVerdictSubject reports whether s may receive a verdict.
func ValidVerdictSubject(s string) bool {
	return strings.HasPrefix(s, VerdictPrefix) && !strings.ContainsAny(s, " *>\t\r\n")
}
