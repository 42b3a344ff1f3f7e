package catalogue

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzParse: no catalogue file makes the parser panic; a file it accepts
// has unique agency ids, and no empty or unknown token authenticates.
func FuzzParse(f *testing.F) {
	f.Add([]byte("provider: {name: P}\nagencies:\n  - {id: alpha, name: A, phase: run}\n"))
	f.Add([]byte(`provider: {name: P, timezone: Europe/Stockholm}
roles:
  ops:
    credentials: [{name: noc, token_sha256: ` + HashToken("noc") + `}]
agencies:
  - id: alpha
    name: Alpha
    phase: run
    credentials: [{name: a, token_sha256: ` + HashToken("a") + `}]
    limits: {ingestion_rate: 10, ingestion_burst_size: 20}
    services:
      - id: web
        name: Web
        tier: high
        sla: {availability: 99.5, service_hours: "Mon-Fri 07:00-18:00"}
        probes: [{name: home, http: {url: "https://alpha.example/"}}]
        scrape: [{targets: ["alpha:9100"]}]
    maintenance: [{name: m, schedule: "Sun 02:00-04:00"}]
`))
	f.Add([]byte("agencies: [{id: Bad.ID}]\n"))
	f.Add([]byte("{{{"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "fuzz.yaml")
		if err != nil {
			require.NotEmpty(t, err.Error())
			return
		}
		seen := map[string]bool{}
		for _, a := range c.Agencies {
			require.False(t, seen[a.ID], "duplicate agency %q accepted", a.ID)
			seen[a.ID] = true
			require.Same(t, a, c.Agency(a.ID))
		}
		_, ok := c.Authenticate("")
		require.False(t, ok)
		_, ok = c.Authenticate("not-a-token-anyone-has")
		require.False(t, ok)
	})
}
