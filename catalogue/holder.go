package catalogue

import (
	"sync"
	"sync/atomic"

	"github.com/samdrift/samdrift/tenancy"
)

// Holder holds the current catalogue and tells watchers when it changes, so
// that a reload takes effect without a restart.
type Holder struct {
	cur      atomic.Pointer[Catalogue]
	mu       sync.Mutex
	watchers []func(*Catalogue)
}

// NewHolder returns a holder of c.
func NewHolder(c *Catalogue) *Holder {
	h := &Holder{}
	h.cur.Store(c)
	return h
}

// Get returns the current catalogue.
func (h *Holder) Get() *Catalogue { return h.cur.Load() }

// Set replaces the catalogue and calls every watcher, in registration order.
func (h *Holder) Set(c *Catalogue) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cur.Store(c)
	for _, w := range h.watchers {
		w(c)
	}
}

// Watch registers f to be called with every new catalogue.
func (h *Holder) Watch(f func(*Catalogue)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.watchers = append(h.watchers, f)
}

// Credentials returns the current catalogue as the tenancy guard's
// credentials.
func (h *Holder) Credentials() tenancy.Credentials { return h.Get() }
