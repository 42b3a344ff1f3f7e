// Package audit writes the audit trail: one JSON object per line with when,
// who and what — onboarding, phase changes, credentials made, incident
// actions and every denied cross-agency attempt.
package audit

import (
	"encoding/json"
	"fmt"
	"os"
	"os/user"
	"sync"
	"time"
)

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
	mu   sync.Mutex
	path string
	now  func() time.Time
}

// Open returns a log appending to path (created 0600 if missing).
func Open(path string) *Log { return &Log{path: path, now: time.Now} }

// Write appends an entry, synced to disk.
func (l *Log) Write(e Entry) error {
	if l == nil || l.path == "" {
		return nil
	}
	if e.Time.IsZero() {
		e.Time = l.now().UTC()
	}
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	f, err := os.OpenFile(l.path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	defer f.Close()
	if _, err := f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	return f.Sync()
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
