package catalogue

import (
	"crypto/sha256"
	"crypto/tls"
)

// Role is what a credential is allowed to do.
type Role string

// The roles a credential can have.
const (
	RoleAgency Role = "agency" // one agency's own data only
	RoleOps    Role = "ops"    // the operations center: reads every agency
	RoleAdmin  Role = "admin"  // onboarding and provisioning; reads every agency
)

// Identity is who a bearer token authenticates.
type Identity struct {
	Role       Role
	Agency     string // set for RoleAgency
	Credential string // the credential's name, for logs and audit
}

// AllAgencies reports whether the identity may read every agency's data.
func (id Identity) AllAgencies() bool { return id.Role == RoleOps || id.Role == RoleAdmin }

// CanRead reports whether the identity may read the given agency's data.
func (id Identity) CanRead(agency string) bool {
	return id.AllAgencies() || (id.Role == RoleAgency && id.Agency == agency)
}

// Authenticate maps a bearer token to its identity. Only SHA-256 digests of
// tokens are held, so the lookup compares digests, never the token itself:
// timing reveals nothing about a valid token.
func (c *Catalogue) Authenticate(token string) (Identity, bool) {
	if token == "" {
		return Identity{}, false
	}
	id, ok := c.byHash[sha256.Sum256([]byte(token))]
	if !ok {
		return Identity{}, false
	}
	if id.Role == RoleAgency && c.byID[id.Agency] == nil {
		return Identity{}, false
	}
	return id, true
}

// CredentialIdentity returns the identity of a credential by name (used by the
// router to resolve push sources), or false.
func (c *Catalogue) CredentialIdentity(name string) (Identity, bool) {
	id, ok := c.byCred[name]
	return id, ok
}

// AuthenticateCert maps a verified TLS client certificate to the identity of
// the credential with its subject. Unverified certificates count for nothing.
func (c *Catalogue) AuthenticateCert(cs *tls.ConnectionState) (Identity, bool) {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return Identity{}, false
	}
	id, ok := c.byCert[cs.VerifiedChains[0][0].Subject.String()]
	if !ok || (id.Role == RoleAgency && c.byID[id.Agency] == nil) {
		return Identity{}, false
	}
	return id, true
}
