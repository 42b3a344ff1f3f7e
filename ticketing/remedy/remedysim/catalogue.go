package remedysim

import (
	"sort"
	"strings"

	"github.com/samdrift/samdrift/catalogue"
)

// Companies returns every Remedy company a catalogue names: the agencies'
// (and their services' overrides), the onboarding queue's and, with
// provider-wide rules, the provider's own.
func Companies(c *catalogue.Catalogue) []string {
	set := map[string]bool{}
	add := func(s string) {
		if s != "" {
			set[s] = true
		}
	}
	add(c.Ticketing.Onboarding.Company)
	if pa := c.ProviderAgency(); pa != nil {
		add(pa.Remedy.Company)
	}
	for _, a := range c.Agencies {
		add(a.Remedy.Company)
		if a.Remedy.Company == "" {
			add(a.Name)
		}
		for _, s := range a.Services {
			if s.Remedy != nil {
				add(s.Remedy.Company)
			}
		}
	}
	out := make([]string, 0, len(set))
	for s := range set {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// UsersFor returns the integration user (every company) and one agent per
// company who sees only that company's incidents.
func UsersFor(companies []string, integrationUser, password string) []User {
	users := []User{{Name: integrationUser, Password: password, Companies: []string{"*"}}}
	for _, c := range companies {
		name := strings.ToLower(strings.NewReplacer(" ", "-", "/", "-").Replace(c)) + "-agent"
		users = append(users, User{Name: name, Password: password, Companies: []string{c}})
	}
	return users
}
