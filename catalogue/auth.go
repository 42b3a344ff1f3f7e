package catalogue

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"strings"

	"github.com/samdrift/samdrift/tenancy"
)

// Identity is tenancy's: the catalogue only maps its credentials to one.
type Identity = tenancy.Identity

// Role is tenancy's role of a credential.
type Role = tenancy.Role

// The roles a credential can have.
const (
	RoleAgency = tenancy.RoleAgency
	RoleOps    = tenancy.RoleOps
	RoleAdmin  = tenancy.RoleAdmin
)

// Authenticate maps a bearer token to its identity. Only SHA-256 digests of
// tokens are held, so the lookup compares digests, never the token itself:
// timing reveals nothing about a valid token.
func (c *Catalogue) Authenticate(token string) (Identity, bool) {
	if token == "" {
		return Identity{}, false
	}
	if strings.HasPrefix(token, grafanaTokenPrefix) {
		return c.authenticateGrafana(token)
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

// grafanaTokenPrefix starts every credential derived for Grafana.
const grafanaTokenPrefix = "sdg_"

// GrafanaSubjectOps is the subject of the NOC organisation's credential.
const GrafanaSubjectOps = "_ops"

// GrafanaToken derives the read-only credential Grafana's data source of an
// agency (or of the NOC, GrafanaSubjectOps) uses. The catalogue holds only
// hashes of tokens, so these are derived from a key instead: stable across
// provisioning runs, verifiable by Samdrift, never stored.
func GrafanaToken(key []byte, subject string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("samdrift-grafana:" + subject))
	return grafanaTokenPrefix + subject + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:24])
}

func (c *Catalogue) authenticateGrafana(token string) (Identity, bool) {
	if len(c.grafanaKey) == 0 {
		return Identity{}, false
	}
	subject, _, ok := strings.Cut(strings.TrimPrefix(token, grafanaTokenPrefix), ".")
	if !ok || !hmac.Equal([]byte(GrafanaToken(c.grafanaKey, subject)), []byte(token)) {
		return Identity{}, false
	}
	if subject == GrafanaSubjectOps {
		return Identity{Role: RoleOps, Credential: "grafana-noc", ReadOnly: true}, true
	}
	if c.byID[subject] == nil {
		return Identity{}, false
	}
	return Identity{Role: RoleAgency, Agency: subject, Credential: "grafana-" + subject, ReadOnly: true}, true
}

// SetGrafanaKey sets the key that verifies derived Grafana credentials.
func (c *Catalogue) SetGrafanaKey(key []byte) { c.grafanaKey = key }

// Valid reports whether an identity's credential is still in the
// catalogue (a console session ends when its credential is revoked).
func (c *Catalogue) Valid(id Identity) bool {
	if len(id.Credential) > 8 && id.Credential[:8] == "grafana-" {
		if id.Credential == "grafana-noc" {
			return len(c.grafanaKey) > 0
		}
		return len(c.grafanaKey) > 0 && c.byID[id.Agency] != nil
	}
	cur, ok := c.byCred[id.Credential]
	if !ok || cur != id {
		return false
	}
	return cur.Role != RoleAgency || c.byID[cur.Agency] != nil
}

// AgencyIDs lists the catalogue's agency ids, in catalogue order.
func (c *Catalogue) AgencyIDs() []string {
	out := make([]string, len(c.Agencies))
	for i, a := range c.Agencies {
		out[i] = a.ID
	}
	return out
}
