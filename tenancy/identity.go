package tenancy

import (
	"context"
	"net/http"
	"strings"
)

// Label is the label that names the agency of every series, alert and
// incident. The router sets it; a sender's own value is kept as
// exported_agency.
const Label = "agency"

// Role is what a credential is allowed to do.
type Role string

// The roles a credential can have.
const (
	RoleAgency Role = "agency" // one agency's own data only
	RoleOps    Role = "ops"    // the operations center: reads every agency
	RoleAdmin  Role = "admin"  // onboarding and provisioning; reads every agency
)

// Identity is who a credential authenticates.
type Identity struct {
	Role       Role   `json:"role"`
	Agency     string `json:"agency,omitempty"` // set for RoleAgency
	Credential string `json:"credential"`       // the credential's name, for logs and audit
	// ReadOnly identities may query but not push or change anything: the
	// credentials Samdrift derives for Grafana's data sources.
	ReadOnly bool `json:"read_only,omitempty"`
}

// AllAgencies reports whether the identity may read every agency's data.
func (id Identity) AllAgencies() bool { return id.Role == RoleOps || id.Role == RoleAdmin }

// CanRead reports whether the identity may read the given agency's data.
func (id Identity) CanRead(agency string) bool {
	return id.AllAgencies() || (id.Role == RoleAgency && id.Agency == agency)
}

// Agencies returns the agencies the identity may read out of all: every
// one for ops and admin, its own for an agency, none otherwise.
func (id Identity) Agencies(all []string) []string {
	switch {
	case id.AllAgencies():
		return all
	case id.Role == RoleAgency:
		for _, a := range all {
			if a == id.Agency {
				return []string{a}
			}
		}
	}
	return nil
}

// IsAdmin reports whether the identity may change things (onboarding,
// restatements, deletions).
func (id Identity) IsAdmin() bool { return id.Role == RoleAdmin && !id.ReadOnly }

// IsProvider reports whether the identity is the provider's (ops or admin).
func (id Identity) IsProvider() bool { return id.AllAgencies() }

type ctxKey struct{}

// NewContext returns ctx carrying the caller's identity.
func NewContext(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// FromContext returns the caller's identity. Read paths fail closed: no
// identity means no data.
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
