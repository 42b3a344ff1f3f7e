package catalogue

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
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

type ctxKey struct{}

// NewContext returns ctx carrying the caller's identity.
func NewContext(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// FromContext returns the caller's identity. Read paths must fail closed:
// no identity means no data.
func FromContext(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(ctxKey{}).(Identity)
	return id, ok
}

// BearerToken extracts the token of an "Authorization: Bearer" header.
func BearerToken(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// Authenticate is HTTP middleware: it resolves a verified client
// certificate or the bearer token to an identity stored in the request
// context, or answers 401.
func (h *Holder) Authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := h.Get()
		id, ok := c.AuthenticateCert(r.TLS)
		if !ok {
			id, ok = c.Authenticate(BearerToken(r))
		}
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="samdrift"`)
			http.Error(w, "401 unauthorized: a valid bearer token is required", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r.WithContext(NewContext(r.Context(), id)))
	})
}
