package tenancy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/samdrift/samdrift/internal/audit"
	"github.com/samdrift/samdrift/internal/httpapi"
)

// Credentials maps what a caller presents to an identity: the catalogue.
type Credentials interface {
	// Authenticate maps a bearer token to its identity.
	Authenticate(token string) (Identity, bool)
	// AuthenticateCert maps a verified client certificate to its identity.
	AuthenticateCert(cs *tls.ConnectionState) (Identity, bool)
	// Valid reports whether the credential of an identity still exists,
	// so that a session ends when its credential is revoked.
	Valid(id Identity) bool
	// AgencyIDs lists every agency id.
	AgencyIDs() []string
}

// Auditor records audit entries; it counts and logs its own failures.
type Auditor interface {
	Write(audit.Entry) error
}

// ErrDenied is the error of a refused authorisation.
var ErrDenied = errors.New("access denied")

// GuardOptions configure a Guard.
type GuardOptions struct {
	// Credentials returns the current credentials (the catalogue in force).
	Credentials func() Credentials
	Audit       Auditor
	// Sessions holds console sessions; nil accepts no session cookie.
	Sessions *Sessions
	// AuditRate bounds the denial entries written per credential and
	// second (burst 20 times that); the rest are counted and the count
	// is written with the next entry. Default 5.
	AuditRate  float64
	Registerer prometheus.Registerer
}

// Guard authenticates callers and authorises what they ask for, writing
// the audit entry of every denial.
type Guard struct {
	opts       GuardOptions
	suppressed prometheus.Counter
	denied     *prometheus.CounterVec

	mu       sync.Mutex
	limiters map[string]*auditLimiter
}

type auditLimiter struct {
	l          *rate.Limiter
	suppressed int
}

// NewGuard returns a guard.
func NewGuard(o GuardOptions) *Guard {
	if o.Audit == nil {
		o.Audit = (*audit.Log)(nil)
	}
	if o.AuditRate == 0 {
		o.AuditRate = 5
	}
	g := &Guard{opts: o, limiters: map[string]*auditLimiter{},
		suppressed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "samdrift_audit_denials_suppressed_total",
			Help: "Denial audit entries not written because their credential was over its audit rate; each later entry carries the count.",
		}),
		denied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "samdrift_access_denied_total",
			Help: "Requests refused by authorisation, by action.",
		}, []string{"action"}),
	}
	if o.Registerer != nil {
		o.Registerer.MustRegister(g.suppressed, g.denied)
	}
	return g
}

// Credentials returns the credentials in force.
func (g *Guard) Credentials() Credentials { return g.opts.Credentials() }

// Identify returns the caller of r from a verified client certificate or a
// bearer token (never a cookie: APIs are not reachable by a browser's
// ambient credentials).
func (g *Guard) Identify(r *http.Request) (Identity, bool) {
	c := g.opts.Credentials()
	if id, ok := c.AuthenticateCert(r.TLS); ok {
		return id, true
	}
	return c.Authenticate(BearerToken(r))
}

// IdentifySession is Identify that also accepts a console session cookie.
func (g *Guard) IdentifySession(r *http.Request) (Identity, bool) {
	if id, ok := g.Identify(r); ok {
		return id, true
	}
	if g.opts.Sessions == nil {
		return Identity{}, false
	}
	ck, err := r.Cookie(SessionCookie)
	if err != nil {
		return Identity{}, false
	}
	id, ok := g.opts.Sessions.Lookup(r.Context(), ck.Value)
	if !ok || !g.opts.Credentials().Valid(id) {
		return Identity{}, false
	}
	return id, true
}

// Authenticate is HTTP middleware: it puts the caller's identity in the
// request context, or answers 401.
func (g *Guard) Authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := g.Identify(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="samdrift"`)
			httpapi.Error(w, http.StatusUnauthorized, "a valid bearer token (or client certificate) is required")
			return
		}
		next.ServeHTTP(w, r.WithContext(NewContext(r.Context(), id)))
	})
}

// Authorize reports whether the caller in ctx may read the agency's data,
// and records a denial (cross_agency_denied) in the audit trail. what
// describes the request for the trail (a path, an expression).
func (g *Guard) Authorize(ctx context.Context, agency string, what map[string]any) error {
	id, ok := FromContext(ctx)
	if ok && id.CanRead(agency) {
		return nil
	}
	detail := map[string]any{"requested": agency}
	for k, v := range what {
		detail[k] = v
	}
	g.deny(id, "cross_agency_denied", detail)
	return fmt.Errorf("%w: agency %q", ErrDenied, agency)
}

// RequireProvider reports whether the caller in ctx is the provider's (ops
// or admin; admin only when admin is set), and records a denial
// (admin_denied).
func (g *Guard) RequireProvider(ctx context.Context, adminOnly bool, what map[string]any) error {
	id, ok := FromContext(ctx)
	if ok && ((adminOnly && id.IsAdmin()) || (!adminOnly && id.IsProvider())) {
		return nil
	}
	g.deny(id, "admin_denied", what)
	if adminOnly {
		return fmt.Errorf("%w: this needs an admin credential", ErrDenied)
	}
	return fmt.Errorf("%w: this is the provider's (ops or admin credential)", ErrDenied)
}

// AuditCrossAgency records that the caller asked for other agencies' data
// (its expression named them) although the answer holds none of it.
func (g *Guard) AuditCrossAgency(ctx context.Context, others []string, detail map[string]any) {
	id, _ := FromContext(ctx)
	d := map[string]any{"requested": others}
	for k, v := range detail {
		d[k] = v
	}
	g.deny(id, "cross_agency_denied", d)
}

func (g *Guard) deny(id Identity, action string, detail map[string]any) {
	g.denied.WithLabelValues(action).Inc()
	key := id.Credential
	g.mu.Lock()
	al := g.limiters[key]
	if al == nil {
		al = &auditLimiter{l: rate.NewLimiter(rate.Limit(g.opts.AuditRate), int(20*g.opts.AuditRate))}
		g.limiters[key] = al
		if len(g.limiters) > 10000 {
			g.limiters = map[string]*auditLimiter{key: al}
		}
	}
	if !al.l.Allow() {
		al.suppressed++
		g.mu.Unlock()
		g.suppressed.Inc()
		return
	}
	suppressed := al.suppressed
	al.suppressed = 0
	g.mu.Unlock()
	if detail == nil {
		detail = map[string]any{}
	}
	if suppressed > 0 {
		detail["suppressed_before"] = suppressed
	}
	_ = g.opts.Audit.Write(audit.Entry{Time: time.Now().UTC(), Who: id.Credential, Action: action, Agency: id.Agency, Detail: detail})
}

// Record writes an audit entry of something a caller did (an incident
// acknowledged, a restatement); failures are the auditor's to count.
func (g *Guard) Record(e audit.Entry) {
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	_ = g.opts.Audit.Write(e)
}

// Deny writes a refusal for the caller: 403 for the provider's own paths,
// 404 for another agency's data (the same answer whether it exists).
func Deny(w http.ResponseWriter, err error) {
	httpapi.Error(w, http.StatusForbidden, err.Error())
}
