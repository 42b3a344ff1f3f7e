// Package audit writes the audit trail: one JSON object per line with when,
// who and what — onboarding, phase changes, credentials made, incident
// actions, restatements, deletions and every denied cross-agency attempt.
//
// Entries are bounded: a long text (a query of megabytes) is recorded by its
// SHA-256 and its first bytes, so that an agency cannot grow the trail on
// the data disk by the size of what it sends. A write that fails is counted
// (samdrift_audit_write_failures_total) and logged.
package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/user"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// MaxText is the longest text kept whole in an entry's detail.
const MaxText = 512

// Entry is one audit event.
type Entry struct {
	Time   time.Time      `json:"time"`
	Who    string         `json:"who"`
	Action string         `json:"action"`
	Agency string         `json:"agency,omitempty"`
	Detail map[string]any `json:"detail,omitempty"`
}

// Log appends entries to a file.
type Log struct {
	mu       sync.Mutex
	path     string
	now      func() time.Time
	logger   *slog.Logger
	failures prometheus.Counter
}

// Open returns a log appending to path (created 0600 if missing).
func Open(path string) *Log { return New(path, nil, nil) }

// New returns a log appending to path that logs and counts its failures.
func New(path string, logger *slog.Logger, reg prometheus.Registerer) *Log {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	l := &Log{path: path, now: time.Now, logger: logger, failures: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "samdrift_audit_write_failures_total",
		Help: "Audit entries that could not be written (disk full, permissions); each is also logged.",
	})}
	if reg != nil {
		reg.MustRegister(l.failures)
	}
	return l
}

// Write appends an entry, synced to disk. A failure is counted and logged
// before it is returned, so callers may ignore it.
func (l *Log) Write(e Entry) error {
	if l == nil || l.path == "" {
		return nil
	}
	if e.Time.IsZero() {
		e.Time = l.now().UTC()
	}
	e.Detail = bound(e.Detail)
	b, err := json.Marshal(e)
	if err != nil {
		return l.fail(e, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	f, err := os.OpenFile(l.path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return l.fail(e, err)
	}
	defer f.Close()
	if _, err := f.Write(append(b, '\n')); err != nil {
		return l.fail(e, err)
	}
	if err := f.Sync(); err != nil {
		return l.fail(e, err)
	}
	return nil
}

func (l *Log) fail(e Entry, err error) error {
	if l.failures != nil {
		l.failures.Inc()
	}
	if l.logger != nil {
		l.logger.Error("audit entry not written", "action", e.Action, "who", e.Who, "agency", e.Agency, "err", err)
	}
	return fmt.Errorf("audit log: %w", err)
}

// bound replaces texts longer than MaxText by their first MaxText bytes and
// their SHA-256, in a copy of d.
func bound(d map[string]any) map[string]any {
	if d == nil {
		return nil
	}
	out := make(map[string]any, len(d))
	for k, v := range d {
		switch v := v.(type) {
		case string:
			out[k] = Text(v)
		case []string:
			vs := make([]any, 0, min(len(v), 20))
			for i, s := range v {
				if i == 20 {
					vs = append(vs, fmt.Sprintf("… %d more", len(v)-20))
					break
				}
				vs = append(vs, Text(s))
			}
			out[k] = vs
		default:
			out[k] = v
		}
	}
	return out
}

// Bounded is a long text as an entry records it.
type Bounded struct {
	Text   string `json:"text"`
	SHA256 string `json:"sha256"`
	Bytes  int    `json:"bytes"`
}

// Text returns s itself if it is short, else its Bounded form.
func Text(s string) any {
	if len(s) <= MaxText {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	cut := MaxText
	for cut > 0 && s[cut]&0xc0 == 0x80 { // not inside a UTF-8 sequence
		cut--
	}
	return Bounded{Text: s[:cut] + "…", SHA256: hex.EncodeToString(sum[:]), Bytes: len(s)}
}

// Me names the person running a command: --who, else the login name.
func Me(who string) string {
	if who != "" {
		return who
	}
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return os.Getenv("USER")
}
