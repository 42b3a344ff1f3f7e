package catalogue

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// base is a small valid catalogue; cases below replace one piece of it.
const base = `provider:
  name: Provider
  timezone: Europe/Stockholm
roles:
  ops:
    credentials:
      - name: noc
        token_sha256: 1111111111111111111111111111111111111111111111111111111111111111
agencies:
  - id: alpha
    name: Alpha
    phase: run
    credentials:
      - name: alpha-push
        token_sha256: 2222222222222222222222222222222222222222222222222222222222222222
    services:
      - id: web
        name: Web
        tier: high
        sla:
          availability: 99.5
        scrape:
          - targets: ["10.0.0.1:9100"]
        probes:
          - http: https://alpha.example/
  - id: beta
    name: Beta
    phase: build
    services:
      - id: api
        name: API
        tier: low
`

func TestParseValid(t *testing.T) {
	c, err := Parse([]byte(base), "cat.yaml")
	require.NoError(t, err)
	require.Len(t, c.Agencies, 2)
	require.Equal(t, "Europe/Stockholm", c.Location().String())
	require.Equal(t, DefaultLimits, c.Agency("alpha").EffectiveLimits())
	require.Equal(t, "builtin", c.Ticketing.Backend)

	id, ok := c.Authenticate("")
	require.False(t, ok)
	require.Equal(t, Identity{}, id)
}

func TestExampleCatalogueIsValid(t *testing.T) {
	// The example beside the architecture is the format's contract.
	c, err := LoadFile("testdata/example.yaml")
	require.NoError(t, err)
	require.Equal(t, 50000.0, c.Agency("digg").EffectiveLimits().IngestionRate)
	require.Equal(t, 10000.0, c.Agency("ssc").EffectiveLimits().IngestionRate)
	require.Equal(t, 150000, c.Agency("ssc").EffectiveLimits().MaxGlobalSeriesPerUser)
}

func TestValidation(t *testing.T) {
	for _, tc := range []struct {
		name     string
		old, new string
		want     string
	}{
		{"unknown top-level field", "roles:", "bogus: 1\nroles:", "cat.yaml:4: unknown field \"bogus\""},
		{"unknown nested field", "    phase: run\n", "    phase: run\n    colour: red\n", "cat.yaml:13: unknown field \"colour\" in agencies"},
		{"unknown field in service", "        tier: high\n", "        tier: high\n        owner: x\n", "cat.yaml:20: unknown field \"owner\" in services"},
		{"duplicate agency id", "  - id: beta", "  - id: alpha", "cat.yaml:26: duplicate agency id \"alpha\""},
		{"bad agency id", "  - id: beta", "  - id: Beta_1", "cat.yaml:26: agency id \"Beta_1\" must match [a-z0-9-]{1,32}"},
		{"bad phase", "    phase: build", "    phase: operate", "cat.yaml:28: agency \"beta\": phase \"operate\" must be one of plan, build, run"},
		{"missing phase", "    phase: build\n", "", "cat.yaml:26: agency \"beta\": phase \"\" must be one of plan, build, run"},
		{"malformed hash", "token_sha256: 2222222222222222222222222222222222222222222222222222222222222222", "token_sha256: XYZ", "cat.yaml:15: token_sha256 of credential \"alpha-push\" must be 64 lowercase hex digits (SHA-256 of the token)"},
		{"uppercase hash", "token_sha256: 2222222222222222222222222222222222222222222222222222222222222222", "token_sha256: 222222222222222222222222222222222222222222222222222222222222222A", "cat.yaml:15: token_sha256 of credential \"alpha-push\" must be 64 lowercase hex digits (SHA-256 of the token)"},
		{"shared token", "2222222222222222222222222222222222222222222222222222222222222222", "1111111111111111111111111111111111111111111111111111111111111111", "cat.yaml:15: credential \"alpha-push\" has the same token as credential \"noc\""},
		{"duplicate credential name", "- name: alpha-push", "- name: noc", "cat.yaml:14: duplicate credential name \"noc\""},
		{"duplicate service id", "      - id: api", "      - id: api\n        name: API\n        tier: low\n      - id: api", "cat.yaml:33: agency \"beta\": duplicate service id \"api\""},
		{"bad tier", "        tier: low", "        tier: gold", "cat.yaml:32: agency \"beta\" service \"api\": tier \"gold\" must be one of critical, high, medium, low"},
		{"availability 100", "availability: 99.5", "availability: 100", "cat.yaml:21: agency \"alpha\" service \"web\": sla.availability 100 must be a percentage above 0 and below 100"},
		{"bad service hours", "availability: 99.5", "availability: 99.5\n          service_hours: \"Mon-Fry 07:00-18:00\"", "cat.yaml:22: agency \"alpha\" service \"web\": service_hours: unknown weekday \"fry\" (use Mon, Tue, Wed, Thu, Fri, Sat, Sun)"},
		{"bad target", `["10.0.0.1:9100"]`, `["10.0.0.1"]`, "cat.yaml:23: agency \"alpha\" service \"web\": scrape target \"10.0.0.1\" must be host:port"},
		{"bad probe url", "http: https://alpha.example/", "http: alpha.example", "cat.yaml:25: agency \"alpha\" service \"web\": probe URL \"alpha.example\" must be an absolute http(s) URL"},
		{"probe with two kinds", "http: https://alpha.example/", "http: https://alpha.example/\n            tcp: alpha:443", "cat.yaml:25: agency \"alpha\" service \"web\": a probe needs exactly one of http, tcp, dns"},
		{"bad duration", "    phase: run\n", "    phase: run\n    retention: 5 days\n", "cat.yaml:13: invalid duration \"5 days\" (use Prometheus syntax such as 15s, 5m, 1h)"},
		{"bad timezone", "timezone: Europe/Stockholm", "timezone: Mars/Olympus", "cat.yaml:3: unknown time zone \"Mars/Olympus\""},
		{"negative limit", "    phase: run\n", "    phase: run\n    limits:\n      ingestion_rate: -5\n", "cat.yaml:14: ingestion_rate must be positive, got -5"},
		{"unknown limit", "    phase: run\n", "    phase: run\n    limits:\n      ingestion_rat: 5\n", "cat.yaml:14: unknown field \"ingestion_rat\" in limits"},
		{"bad backend", "agencies:", "ticketing:\n  backend: jira\nagencies:", "cat.yaml:10: unknown ticketing backend \"jira\" (want builtin or remedy)"},
		{"relabel writes agency", "    phase: run\n", "    phase: run\n    relabel_configs:\n      - target_label: agency\n        replacement: other\n", "cat.yaml:14: agency \"alpha\": relabel_configs may not write the \"agency\" label (Samdrift sets it)"},
		{"bad relabel action", "    phase: run\n", "    phase: run\n    relabel_configs:\n      - action: explode\n", "cat.yaml:14: unknown relabel action \"explode\""},
		{"maintenance without times", "    phase: run\n", "    phase: run\n    maintenance:\n      - name: patch\n", "cat.yaml:14: agency \"alpha\" maintenance \"patch\": needs schedule, or both start and end"},
		{"bad schedule", "    phase: run\n", "    phase: run\n    maintenance:\n      - name: patch\n        schedule: \"fifth Tue of month 18:00-22:00\"\n", "cat.yaml:15: agency \"alpha\" maintenance \"patch\": unknown ordinal \"fifth\" in schedule \"fifth Tue of month 18:00-22:00\" (use first, second, third, fourth, last)"},
		{"end before start", "    phase: run\n", "    phase: run\n    maintenance:\n      - name: move\n        start: 2026-12-06T04:00:00+01:00\n        end: 2026-12-05T20:00:00+01:00\n", "cat.yaml:16: agency \"alpha\" maintenance \"move\": end 2026-12-05T20:00:00+01:00 is not after start 2026-12-06T04:00:00+01:00"},
		{"remedy company required", "agencies:", "ticketing:\n  backend: remedy\n  remedy:\n    url: https://remedy.example\nagencies:", "cat.yaml:14: agency \"alpha\": remedy.company is required in phase run with the remedy backend"},
		{"company with spaces", "    phase: build\n", "    phase: build\n    remedy:\n      company: \" BETA\"\n", "cat.yaml:30: agency \"beta\": remedy.company \" BETA\" has leading or trailing spaces"},
		{"company with control chars", "    phase: build\n", "    phase: build\n    remedy:\n      company: \"BE\\tTA\"\n", "cat.yaml:30: agency \"beta\": remedy.company \"BE\\tTA\" contains control characters"},
		{"company too long", "    phase: build\n", "    phase: build\n    remedy:\n      company: " + strings.Repeat("B", 255) + "\n", "cat.yaml:30: agency \"beta\": remedy.company is longer than Remedy's 254 characters"},
		{"not yaml", "roles:", "roles: [", "cat.yaml:3: did not find expected ',' or ']'"},
		{"a word for a number", "availability: 99.5", "availability: high", "cat.yaml:21: agencies[0].services[0].sla.availability: \"high\" is not a number"},
		{"a list for a string", "    phase: run\n", "    phase: [run]\n", "cat.yaml:12: agencies[0].phase: a list is not a phase"},
		{"misindented key", "        tier: high\n", "       tier: high\n", "cat.yaml:19: bad indentation: 7 spaces line up with no block above (did not find expected '-' indicator)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Contains(t, base, tc.old, "test case does not apply to base")
			in := strings.Replace(base, tc.old, tc.new, 1)
			_, err := Parse([]byte(in), "cat.yaml")
			require.Error(t, err)
			require.Contains(t, strings.Split(err.Error(), "\n"), tc.want, "got:\n%s", err)
		})
	}
}

func TestEmptyFile(t *testing.T) {
	_, err := Parse(nil, "empty.yaml")
	require.EqualError(t, err, "empty.yaml:1: catalogue is empty")
}

func TestLoadFileMissing(t *testing.T) {
	_, err := LoadFile(filepath.Join(t.TempDir(), "nope.yaml"))
	require.ErrorContains(t, err, "nope.yaml: read catalogue: open")
}

func TestAuthenticate(t *testing.T) {
	dir := t.TempDir()
	in := strings.Replace(base, "2222222222222222222222222222222222222222222222222222222222222222", HashToken("alpha-secret"), 1)
	in = strings.Replace(in, "1111111111111111111111111111111111111111111111111111111111111111", HashToken("noc-secret"), 1)
	path := filepath.Join(dir, "c.yaml")
	require.NoError(t, os.WriteFile(path, []byte(in), 0o600))
	c, err := LoadFile(path)
	require.NoError(t, err)

	id, ok := c.Authenticate("alpha-secret")
	require.True(t, ok)
	require.Equal(t, Identity{Role: RoleAgency, Agency: "alpha", Credential: "alpha-push"}, id)
	require.True(t, id.CanRead("alpha"))
	require.False(t, id.CanRead("beta"))

	id, ok = c.Authenticate("noc-secret")
	require.True(t, ok)
	require.Equal(t, RoleOps, id.Role)
	require.True(t, id.CanRead("beta"))

	_, ok = c.Authenticate("alpha-secret ")
	require.False(t, ok)
	_, ok = c.Authenticate(HashToken("alpha-secret"))
	require.False(t, ok, "the hash itself must not authenticate")
}

// TestScrapeConfigFields: Prometheus's own config types check a scrape
// entry's scrape_config fields, each problem reported as file:line;
// honor_labels is refused, and secrets must come from files.
func TestScrapeConfigFields(t *testing.T) {
	good := `provider: {name: P}
agencies:
  - id: alpha
    name: A
    phase: run
    services:
      - id: web
        name: W
        tier: low
        scrape:
          - targets: ["127.0.0.1:9100"]
            fallback_scrape_protocol: PrometheusText0.0.4
            scrape_protocols: [PrometheusProto, PrometheusText0.0.4]
            scrape_native_histograms: true
            scheme: https
            tls_config: {ca_file: ca.pem, server_name: node.example}
            authorization: {credentials_file: token}
            params: {module: [http_2xx]}
            sample_limit: 5000
            label_limit: 30
            metric_relabel_configs:
              - {source_labels: [__name__], regex: "go_.*", action: drop}
`
	c, err := Parse([]byte(good), "/etc/samdrift/catalogue.yaml")
	require.NoError(t, err)
	sc := c.Agencies[0].Services[0].Scrape[0]
	require.Equal(t, "/etc/samdrift/ca.pem", sc.TLSConfig.CAFile, "files are relative to the catalogue")
	require.Equal(t, "/etc/samdrift/token", sc.Authorization.CredentialsFile)

	base := good[:strings.Index(good, "            fallback_scrape_protocol")]
	for _, tc := range []struct{ field, want string }{
		{"fallback_scrape_protocol: Bogus", "Bogus"},
		{"scrape_protocols: [PrometheusText0.0.4, NotAProtocol]", "NotAProtocol"},
		{"metric_relabel_configs: [{action: explode}]", "explode"},
		{"metric_relabel_configs: [{source_labels: [a], regex: '(', action: drop}]", "regex"},
		{"honor_labels: true", `unknown field "honor_labels"`},
		{"authorization: {credentials: hunter2}", "credentials_file"},
		{"basic_auth: {username: u, password: hunter2}", "password_file"},
		{"tls_config: {cert: x, key: y}", "key_file"},
		{"sample_limit: -1", "sample_limit"},
	} {
		_, err := Parse([]byte(base+"            "+tc.field+"\n"), "catalogue.yaml")
		require.Error(t, err, tc.field)
		require.Contains(t, err.Error(), "catalogue.yaml:12:", "%s: %v", tc.field, err)
		require.Contains(t, err.Error(), tc.want, tc.field)
	}
}
