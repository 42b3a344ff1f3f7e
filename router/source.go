package router

import (
	"github.com/samdrift/samdrift/bus"
	"github.com/samdrift/samdrift/catalogue"
	"github.com/samdrift/samdrift/tenancy"
)

// source is what the router knows about where a batch came from.
type source struct {
	agency  *catalogue.Agency
	service string // set when the source is bound to one service (scrapes, probes)
	// trusted: the provider's own collector measured the batch (scrapes,
	// probes), so the origin label it set stands.
	trusted bool
	// provider is set for the provider's own ops/admin credentials, which
	// may push alerts naming any agency (their own Alertmanager).
	provider bool
}

// resolve maps the source tokens of an ingest subject to the agency the
// catalogue assigns them. Only the subject is trusted: collectors choose it
// from what they authenticated, and on a NATS cluster account permissions
// keep senders to their own subjects.
func resolve(cat *catalogue.Catalogue, tokens []string, kind string) (source, error) {
	var s source
	switch {
	case (tokens[0] == bus.SourceScrape || tokens[0] == bus.SourceProbe) && len(tokens) == 3:
		a := cat.Agency(tokens[1])
		if a == nil {
			return s, reject("unknown_agency", "%s source for unknown agency %q", tokens[0], tokens[1])
		}
		if a.Service(tokens[2]) == nil {
			return s, reject("unknown_service", "agency %q has no service %q", tokens[1], tokens[2])
		}
		s.agency, s.service, s.trusted = a, tokens[2], true
	case tokens[0] == bus.SourcePush && len(tokens) == 2:
		id, ok := cat.CredentialIdentity(tokens[1])
		if !ok {
			return s, reject("unknown_credential", "push from unknown credential %q", tokens[1])
		}
		if id.Role != tenancy.RoleAgency {
			if kind == bus.KindAlerts {
				s.provider = true
				return s, nil
			}
			return s, reject("not_agency_credential", "credential %q is not an agency credential", tokens[1])
		}
		s.agency = cat.Agency(id.Agency)
	case tokens[0] == bus.SourceNATS && len(tokens) == 2:
		// The subject comes from the agency's NATS account import, which
		// the provider writes; the agency cannot publish another.
		if s.agency = cat.Agency(tokens[1]); s.agency == nil {
			return s, reject("unknown_agency", "nats source for unknown agency %q", tokens[1])
		}
	default:
		return s, reject("unknown_source", "unknown source %v", tokens)
	}
	if !s.agency.Phase.AcceptsData() {
		return s, reject("plan_phase", "agency %q is in phase plan and accepts no data", s.agency.ID)
	}
	return s, nil
}

// pushed reports whether the batch was pushed by an agency (remote write,
// OTLP, NATS), not measured by the provider's collector.
func (s source) pushed() bool { return !s.trusted }
