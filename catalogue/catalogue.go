package catalogue

import (
	"fmt"
	"time"

	promcfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/relabel"
	"gopkg.in/yaml.v3"
)

// Phase is an agency's lifecycle phase.
type Phase string

// The phases an agency moves through.
const (
	PhasePlan  Phase = "plan"
	PhaseBuild Phase = "build"
	PhaseRun   Phase = "run"
)

// AcceptsData reports whether data for an agency in this phase is collected
// and stored. Plan-phase agencies are catalogue entries only.
func (p Phase) AcceptsData() bool { return p == PhaseBuild || p == PhaseRun }

// Catalogue is the parsed and validated agency catalogue.
type Catalogue struct {
	Provider    Provider      `yaml:"provider"`
	Roles       Roles         `yaml:"roles"`
	Defaults    Defaults      `yaml:"defaults"`
	Agencies    []*Agency     `yaml:"agencies"`
	Ticketing   Ticketing     `yaml:"ticketing"`
	Grafana     Grafana       `yaml:"grafana"`
	RemoteWrite []RemoteWrite `yaml:"remote_write"`
	// Notifications are the on-call notification routes.
	Notifications []*NotificationRoute `yaml:"notifications"`

	file     string
	location *time.Location
	byID     map[string]*Agency
	byHash   map[[32]byte]Identity
	byCred   map[string]Identity
	byCert   map[string]Identity
	// grafanaKey verifies derived Grafana credentials (nil: none accepted).
	grafanaKey []byte
	provider   *Agency
	// defaultLimits are defaults.limits over DefaultLimits.
	defaultLimits Limits
}

// Provider describes the IT shared-services provider running Samdrift.
type Provider struct {
	Name     string `yaml:"name"`
	Timezone string `yaml:"timezone"`
	// Rules are the provider's own alerting rule files (relative to the
	// catalogue), evaluated over every agency's series at once: "probes of
	// more than five agencies fail" is one event at the provider.
	Rules []string `yaml:"rules"`
	// Remedy is the provider's own company and group for the incidents of
	// its rules.
	Remedy Remedy `yaml:"remedy"`
}

// ProviderID is the id under which the provider's own rules raise alerts
// and incidents; no agency may have it.
const ProviderID = "provider"

// ProviderAgency is the provider as the incident pipeline sees it when it
// has rules of its own (nil otherwise): its alerts and incidents go under
// ProviderID, to its own Remedy company. It is not one of Agencies: it has
// no credentials, targets, store or SLA.
func (c *Catalogue) ProviderAgency() *Agency { return c.provider }

// Roles holds the provider's own credentials.
type Roles struct {
	Ops   RoleConfig `yaml:"ops"`
	Admin RoleConfig `yaml:"admin"`
}

// RoleConfig is a provider role with its credentials.
type RoleConfig struct {
	Credentials []Credential `yaml:"credentials"`
}

// Credential binds a bearer token (stored only as its SHA-256), or a TLS
// client certificate subject, to a name.
type Credential struct {
	Name        string `yaml:"name"`
	TokenSHA256 string `yaml:"token_sha256,omitempty"`
	// CertSubject is the subject of a client certificate (as Go prints it,
	// e.g. "CN=digg-prometheus,O=DIGG") that authenticates as this
	// credential when the HTTP listener verifies client certificates.
	CertSubject string `yaml:"cert_subject,omitempty"`
}

// Defaults apply to every agency unless the agency overrides them.
type Defaults struct {
	ScrapeInterval     Duration     `yaml:"scrape_interval"`
	ScrapeTimeout      Duration     `yaml:"scrape_timeout"`
	EvaluationInterval Duration     `yaml:"evaluation_interval"`
	Retention          Duration     `yaml:"retention"`
	Limits             LimitsConfig `yaml:"limits"`
}

// LimitsConfig is the catalogue form of per-agency limits; unset fields
// inherit. Names follow Grafana Mimir's per-tenant limits.
type LimitsConfig struct {
	IngestionRate          *float64 `yaml:"ingestion_rate"`
	IngestionBurstSize     *int     `yaml:"ingestion_burst_size"`
	MaxGlobalSeriesPerUser *int     `yaml:"max_global_series_per_user"`
	MaxLabelNamesPerSeries *int     `yaml:"max_label_names_per_series"`
	MaxLabelValueLength    *int     `yaml:"max_label_value_length"`
	MaxSamplesPerRequest   *int     `yaml:"max_samples_per_request"`
	// Alerts an agency (or the provider for it) pushes.
	AlertIngestionRate      *float64 `yaml:"alert_ingestion_rate"`
	AlertIngestionBurstSize *int     `yaml:"alert_ingestion_burst_size"`
	MaxAlertsPerRequest     *int     `yaml:"max_alerts_per_request"`
	// Queries an agency runs through the query API.
	MaxConcurrentQueries            *int `yaml:"max_concurrent_queries"`
	MaxOutstandingRequestsPerTenant *int `yaml:"max_outstanding_requests_per_tenant"`
	MaxFetchedSeriesPerQuery        *int `yaml:"max_fetched_series_per_query"`
	MaxSamplesPerQuery              *int `yaml:"max_samples_per_query"`
	MaxQueryExpressionSizeBytes     *int `yaml:"max_query_expression_size_bytes"`
}

// Limits are the effective limits of one agency.
type Limits struct {
	IngestionRate           float64
	IngestionBurstSize      int
	MaxGlobalSeriesPerUser  int
	MaxLabelNamesPerSeries  int
	MaxLabelValueLength     int
	MaxSamplesPerRequest    int
	AlertIngestionRate      float64
	AlertIngestionBurstSize int
	MaxAlertsPerRequest     int
	// MaxConcurrentQueries run at once; up to
	// MaxOutstandingRequestsPerTenant more wait, the rest get 429.
	MaxConcurrentQueries            int
	MaxOutstandingRequestsPerTenant int
	MaxFetchedSeriesPerQuery        int
	// MaxSamplesPerQuery bounds the samples one query holds in memory at
	// once (Prometheus's --query.max-samples, per agency).
	MaxSamplesPerQuery int
	// MaxQueryExpressionSizeBytes bounds a query's text (query and match[]
	// together): a longer one is refused before it is parsed.
	MaxQueryExpressionSizeBytes int
}

// DefaultLimits are used where neither defaults.limits nor the agency sets a value.
var DefaultLimits = Limits{
	IngestionRate:                   10000,
	IngestionBurstSize:              200000,
	MaxGlobalSeriesPerUser:          150000,
	MaxLabelNamesPerSeries:          30,
	MaxLabelValueLength:             2048,
	MaxSamplesPerRequest:            100000,
	AlertIngestionRate:              200,
	AlertIngestionBurstSize:         20000,
	MaxAlertsPerRequest:             10000,
	MaxConcurrentQueries:            4,
	MaxOutstandingRequestsPerTenant: 100,
	MaxFetchedSeriesPerQuery:        500000,
	MaxSamplesPerQuery:              5000000,
	MaxQueryExpressionSizeBytes:     256 << 10,
}

// Agency is one customer agency (a tenant).
type Agency struct {
	ID             string         `yaml:"id"`
	Name           string         `yaml:"name"`
	Phase          Phase          `yaml:"phase"`
	Timezone       string         `yaml:"timezone"`
	Remedy         Remedy         `yaml:"remedy"`
	Credentials    []Credential   `yaml:"credentials"`
	Limits         LimitsConfig   `yaml:"limits"`
	Retention      Duration       `yaml:"retention"`
	Services       []*Service     `yaml:"services"`
	Maintenance    []Maintenance  `yaml:"maintenance"`
	RelabelConfigs RelabelConfigs `yaml:"relabel_configs"`
	RuleFiles      []string       `yaml:"rule_files"`
	// ReopenWindow overrides ticketing.reopen_window for this agency.
	ReopenWindow Duration `yaml:"reopen_window"`

	limits   Limits
	location *time.Location
}

// Remedy maps an agency to its Remedy multi-tenancy company and support group.
type Remedy struct {
	Company             string `yaml:"company,omitempty"`
	SupportCompany      string `yaml:"support_company,omitempty"`
	SupportOrganization string `yaml:"support_organization,omitempty"`
	AssignedGroup       string `yaml:"assigned_group,omitempty"`
}

// Service is one monitored service of an agency.
type Service struct {
	ID     string   `yaml:"id"`
	Name   string   `yaml:"name"`
	Tier   string   `yaml:"tier"`
	SLA    *SLA     `yaml:"sla"`
	Scrape []Scrape `yaml:"scrape"`
	Probes []Probe  `yaml:"probes"`
	Remedy *Remedy  `yaml:"remedy"`
}

// SLA is a service's availability objective, and optionally its latency
// objective.
type SLA struct {
	Availability float64  `yaml:"availability"`
	ServiceHours string   `yaml:"service_hours"`
	For          Duration `yaml:"for"`
	// Latency: the share of requests answered within a threshold over the
	// calendar month, from a histogram the service exposes or sends.
	Latency *Latency `yaml:"latency"`
}

// Latency is a latency objective: Objective percent of the requests
// counted by Histogram (a native histogram, or a classic one whose
// buckets include Threshold) are faster than Threshold seconds.
type Latency struct {
	Histogram string  `yaml:"histogram"`
	Threshold float64 `yaml:"threshold"`
	Objective float64 `yaml:"objective"`
}

// Scrape is one set of scrape targets of a service. Its fields are
// Prometheus's scrape_config fields of the same names, checked by
// Prometheus's own config types; honor_labels is not among them (the
// agency label is the provider's), and secrets come from files only.
type Scrape struct {
	JobName        string   `yaml:"job_name"`
	Targets        []string `yaml:"targets"`
	MetricsPath    string   `yaml:"metrics_path"`
	Scheme         string   `yaml:"scheme"`
	ScrapeInterval Duration `yaml:"scrape_interval"`
	ScrapeTimeout  Duration `yaml:"scrape_timeout"`
	// ScrapeProtocols are the formats asked for, in order (default: the
	// text formats, then protobuf); FallbackScrapeProtocol parses a body
	// whose Content-Type is none of them (an exporter answering
	// application/octet-stream or text/html), as in Prometheus 3.
	ScrapeProtocols        []string `yaml:"scrape_protocols"`
	FallbackScrapeProtocol string   `yaml:"fallback_scrape_protocol"`
	// ScrapeNativeHistograms asks for native histograms (protobuf).
	ScrapeNativeHistograms *bool                  `yaml:"scrape_native_histograms"`
	Params                 map[string][]string    `yaml:"params"`
	SampleLimit            uint                   `yaml:"sample_limit"`
	LabelLimit             uint                   `yaml:"label_limit"`
	TLSConfig              *TLSConfig             `yaml:"tls_config"`
	Authorization          *promcfg.Authorization `yaml:"authorization"`
	BasicAuth              *promcfg.BasicAuth     `yaml:"basic_auth"`
	MetricRelabelConfigs   []*RelabelConfig       `yaml:"metric_relabel_configs"`
}

// TLSConfig is Prometheus's tls_config; its errors carry their line.
type TLSConfig struct {
	promcfg.TLSConfig `yaml:",inline"`
}

// UnmarshalYAML decodes with Prometheus's own checks.
func (c *TLSConfig) UnmarshalYAML(n *yaml.Node) error {
	if err := n.Decode(&c.TLSConfig); err != nil {
		return fmt.Errorf("line %d: tls_config: %w", n.Line, err)
	}
	return nil
}

// MarshalYAML writes Prometheus's form.
func (c TLSConfig) MarshalYAML() (any, error) { return &c.TLSConfig, nil }

// RelabelConfig is Prometheus's relabel_config; its errors carry their line.
type RelabelConfig struct {
	relabel.Config `yaml:",inline"`
}

// UnmarshalYAML decodes with Prometheus's own defaults and checks.
func (r *RelabelConfig) UnmarshalYAML(n *yaml.Node) error {
	if err := n.Decode(&r.Config); err != nil {
		return fmt.Errorf("line %d: metric_relabel_configs: %w", n.Line, err)
	}
	return nil
}

// MarshalYAML writes Prometheus's form.
func (r RelabelConfig) MarshalYAML() (any, error) { return &r.Config, nil }

// DefaultScrapeProtocols are the formats asked for when an entry names
// none: text formats first; protobuf for targets that speak only that.
var DefaultScrapeProtocols = []string{"OpenMetricsText1.0.0", "OpenMetricsText0.0.1", "PrometheusText1.0.0", "PrometheusText0.0.4", "PrometheusProto"}

// PrometheusConfig is the entry as a Prometheus scrape_config, for
// Prometheus's config loader: job is the scrape pool's name.
func (c *Catalogue) PrometheusConfig(s Scrape, job string) map[string]any {
	m := map[string]any{
		"job_name":         job,
		"scrape_interval":  model.Duration(c.ScrapeInterval(s)).String(),
		"scrape_timeout":   model.Duration(c.ScrapeTimeout(s)).String(),
		"scrape_protocols": DefaultScrapeProtocols,
		"honor_labels":     false,
		"honor_timestamps": true,
	}
	if len(s.ScrapeProtocols) > 0 {
		m["scrape_protocols"] = s.ScrapeProtocols
	}
	set := func(k string, v any, ok bool) {
		if ok {
			m[k] = v
		}
	}
	set("metrics_path", s.MetricsPath, s.MetricsPath != "")
	set("scheme", s.Scheme, s.Scheme != "")
	set("fallback_scrape_protocol", s.FallbackScrapeProtocol, s.FallbackScrapeProtocol != "")
	set("scrape_native_histograms", s.ScrapeNativeHistograms, s.ScrapeNativeHistograms != nil)
	set("params", s.Params, len(s.Params) > 0)
	set("sample_limit", s.SampleLimit, s.SampleLimit > 0)
	set("label_limit", s.LabelLimit, s.LabelLimit > 0)
	set("tls_config", s.TLSConfig, s.TLSConfig != nil)
	set("authorization", s.Authorization, s.Authorization != nil)
	set("basic_auth", s.BasicAuth, s.BasicAuth != nil)
	set("metric_relabel_configs", s.MetricRelabelConfigs, len(s.MetricRelabelConfigs) > 0)
	return m
}

// Probe is one availability probe of a service (HTTP, TCP or DNS).
type Probe struct {
	HTTP         string   `yaml:"http"`
	TCP          string   `yaml:"tcp"`
	DNS          string   `yaml:"dns"`
	QueryName    string   `yaml:"query_name"`
	ExpectStatus []int    `yaml:"expect_status"`
	ExpectBody   string   `yaml:"expect_body"`
	Interval     Duration `yaml:"interval"`
	Timeout      Duration `yaml:"timeout"`
}

// Maintenance is a planned maintenance window, one-off or recurring.
type Maintenance struct {
	Name     string    `yaml:"name"`
	Schedule string    `yaml:"schedule"`
	Start    time.Time `yaml:"start"`
	End      time.Time `yaml:"end"`
}

// Ticketing selects and configures the incident backend and lifecycle.
type Ticketing struct {
	Backend      string       `yaml:"backend"`
	ReopenWindow Duration     `yaml:"reopen_window"`
	Remedy       RemedyServer `yaml:"remedy"`
	// GroupBy are alert labels that, with agency, service and alertname,
	// make an incident's dedup key.
	GroupBy []string `yaml:"group_by"`
	// FlapWindow and FlapThreshold: that many open/resolve transitions
	// within the window mark an incident flapping (it stays open).
	FlapWindow    Duration `yaml:"flap_window"`
	FlapThreshold int      `yaml:"flap_threshold"`
	// Onboarding is where incidents of agencies in phase build go.
	Onboarding Remedy `yaml:"onboarding"`
}

// RemedyServer is how Samdrift reaches the Remedy AR REST API.
type RemedyServer struct {
	URL          string `yaml:"url"`
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`
	FirstName    string `yaml:"first_name"`
	LastName     string `yaml:"last_name"`
	// KeyField is the incident field that stores Samdrift's incident id
	// (default "Vendor Ticket Number"), searched before creating.
	KeyField string `yaml:"key_field"`
	// MaxRequestsPerSecond keeps the client under the server's request
	// quota (0: no limit of our own; the server's 429s are still obeyed).
	MaxRequestsPerSecond float64 `yaml:"max_requests_per_second"`
}

// Grafana is the Grafana instance that `samdrift dashboards provision` manages.
type Grafana struct {
	URL           string `yaml:"url"`
	Username      string `yaml:"username"`
	PasswordFile  string `yaml:"password_file"`
	DatasourceURL string `yaml:"datasource_url"`
	// CredentialKeyFile holds the key from which Samdrift derives the
	// read-only credentials of Grafana's data sources (one per agency, one
	// for the NOC); default grafana-credential.key beside the catalogue.
	// Created when missing.
	CredentialKeyFile string `yaml:"credential_key_file"`
	// OrgPrefix names the organisations Samdrift manages (default Samdrift).
	OrgPrefix string `yaml:"org_prefix"`
}

// RemoteWrite exports every agency's series to a scale-out engine.
type RemoteWrite struct {
	URL          string `yaml:"url"`
	TenantHeader string `yaml:"tenant_header"`
}

// File is the path the catalogue was loaded from ("" if parsed from bytes).
func (c *Catalogue) File() string { return c.file }

// Location is the provider's time zone.
func (c *Catalogue) Location() *time.Location { return c.location }

// Agency returns the agency with the given id, or nil.
func (c *Catalogue) Agency(id string) *Agency { return c.byID[id] }

// DefaultLimits returns the limits of the catalogue's defaults (what an
// agency without its own gets; the provider's own pushes are held to them).
func (c *Catalogue) DefaultLimits() Limits { return c.defaultLimits }

// EffectiveLimits returns the agency's limits after defaults are applied.
func (a *Agency) EffectiveLimits() Limits { return a.limits }

// Location is the agency's time zone (its own, else the provider's).
func (a *Agency) Location() *time.Location { return a.location }

// Service returns the agency's service with the given id, or nil.
func (a *Agency) Service(id string) *Service {
	for _, s := range a.Services {
		if s.ID == id {
			return s
		}
	}
	return nil
}

// ScrapeInterval returns the effective scrape interval of a scrape entry.
func (c *Catalogue) ScrapeInterval(s Scrape) time.Duration {
	if s.ScrapeInterval != 0 {
		return time.Duration(s.ScrapeInterval)
	}
	return time.Duration(c.Defaults.ScrapeInterval)
}

// ScrapeTimeout returns the effective scrape timeout of a scrape entry.
func (c *Catalogue) ScrapeTimeout(s Scrape) time.Duration {
	t := time.Duration(s.ScrapeTimeout)
	if t == 0 {
		t = time.Duration(c.Defaults.ScrapeTimeout)
	}
	if iv := c.ScrapeInterval(s); t == 0 || t > iv {
		t = min(10*time.Second, iv)
	}
	return t
}

// NotificationRoute sends incident events that match it to receivers.
type NotificationRoute struct {
	Name string `yaml:"name"`
	// Agencies and Services restrict the route (empty: all).
	Agencies []string `yaml:"agencies"`
	Services []string `yaml:"services"`
	// MinPriority: only incidents of this priority or higher (Critical,
	// High, Medium, Low; default Low: all).
	MinPriority string `yaml:"min_priority"`
	// Events notified: opened, escalated, reopened, resolved, flapping,
	// updated, delivery_failed. Default: opened, escalated, reopened, resolved.
	Events []string `yaml:"events"`
	// Receivers; at least one.
	Webhook      *WebhookReceiver      `yaml:"webhook"`
	Email        *EmailReceiver        `yaml:"email"`
	Alertmanager *AlertmanagerReceiver `yaml:"alertmanager"`
}

// WebhookReceiver posts a JSON notification.
type WebhookReceiver struct {
	URL             string `yaml:"url"`
	BearerTokenFile string `yaml:"bearer_token_file"`
}

// EmailReceiver sends mail over SMTP.
type EmailReceiver struct {
	To           []string `yaml:"to"`
	From         string   `yaml:"from"`
	Smarthost    string   `yaml:"smarthost"` // host:port
	Username     string   `yaml:"username"`
	PasswordFile string   `yaml:"password_file"`
}

// AlertmanagerReceiver forwards incidents as alerts to an Alertmanager's v2
// API, so paging reuses the receivers the provider already has.
type AlertmanagerReceiver struct {
	URL string `yaml:"url"`
}
