package catalogue

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/prometheus/common/model"
	promconfig "github.com/prometheus/prometheus/config"
	"gopkg.in/yaml.v3"
)

var (
	idRe         = regexp.MustCompile(`^[a-z0-9-]{1,32}$`)
	credNameRe   = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	sha256HexRe  = regexp.MustCompile(`^[0-9a-f]{64}$`)
	tiers        = []string{"critical", "high", "medium", "low"}
	phases       = []Phase{PhasePlan, PhaseBuild, PhaseRun}
	backends     = []string{"builtin", "remedy"}
	schemes      = []string{"http", "https"}
	reservedLbls = []string{"agency", "service", "samdrift_origin"}
	priorities   = []string{"Critical", "High", "Medium", "Low"}
	notifyEvents = []string{"opened", "updated", "escalated", "resolved", "reopened", "flapping", "delivery_failed"}
)

type validator struct {
	file     string
	root     *yaml.Node
	problems []Problem
}

func (v *validator) errorf(path []any, format string, args ...any) {
	v.problems = append(v.problems, Problem{File: v.file, Line: node(v.root, path...).Line, Msg: fmt.Sprintf(format, args...)})
}

func at(path []any, more ...any) []any {
	return append(slices.Clone(path), more...)
}

func (v *validator) validate(c *Catalogue) {
	c.byID = map[string]*Agency{}
	c.byHash = map[[32]byte]Identity{}
	c.byCred = map[string]Identity{}
	c.byCert = map[string]Identity{}
	credNames := map[string]bool{}

	if c.Provider.Name == "" {
		v.errorf([]any{"provider"}, "provider.name is required")
	}
	if c.Provider.Timezone == "" {
		c.Provider.Timezone = "UTC"
	}
	loc, err := time.LoadLocation(c.Provider.Timezone)
	if err != nil {
		v.errorf([]any{"provider", "timezone"}, "unknown time zone %q", c.Provider.Timezone)
		loc = time.UTC
	}
	c.location = loc
	c.provider = nil
	if len(c.Provider.Rules) > 0 {
		v.remedy([]any{"provider", "remedy"}, ProviderID, c.Provider.Remedy)
		rem := c.Provider.Remedy
		if rem.Company == "" {
			rem.Company = c.Provider.Name
		}
		c.provider = &Agency{ID: ProviderID, Name: c.Provider.Name, Phase: PhaseRun, Timezone: c.Provider.Timezone,
			Remedy: rem, RuleFiles: c.Provider.Rules, location: loc}
	}

	addCreds := func(path []any, creds []Credential, id Identity) {
		for i, cr := range creds {
			p := at(path, i)
			if !credNameRe.MatchString(cr.Name) {
				v.errorf(at(p, "name"), "credential name %q must match [A-Za-z0-9_-]{1,64}", cr.Name)
			} else if credNames[cr.Name] {
				v.errorf(at(p, "name"), "duplicate credential name %q", cr.Name)
			}
			credNames[cr.Name] = true
			id.Credential = cr.Name
			c.byCred[cr.Name] = id
			if cr.CertSubject != "" {
				if other, dup := c.byCert[cr.CertSubject]; dup {
					v.errorf(at(p, "cert_subject"), "credential %q has the same cert_subject as credential %q", cr.Name, other.Credential)
				} else {
					c.byCert[cr.CertSubject] = id
				}
				if cr.TokenSHA256 == "" {
					continue
				}
			}
			if !sha256HexRe.MatchString(cr.TokenSHA256) {
				v.errorf(at(p, "token_sha256"), "token_sha256 of credential %q must be 64 lowercase hex digits (SHA-256 of the token)", cr.Name)
				continue
			}
			var h [32]byte
			_, _ = hex.Decode(h[:], []byte(cr.TokenSHA256))
			if other, dup := c.byHash[h]; dup {
				v.errorf(at(p, "token_sha256"), "credential %q has the same token as credential %q", cr.Name, other.Credential)
				continue
			}
			c.byHash[h] = id
		}
	}
	addCreds([]any{"roles", "ops", "credentials"}, c.Roles.Ops.Credentials, Identity{Role: RoleOps})
	addCreds([]any{"roles", "admin", "credentials"}, c.Roles.Admin.Credentials, Identity{Role: RoleAdmin})

	d := &c.Defaults
	if d.ScrapeInterval == 0 {
		d.ScrapeInterval = Duration(15 * time.Second)
	}
	if d.EvaluationInterval == 0 {
		d.EvaluationInterval = Duration(15 * time.Second)
	}
	if d.Retention == 0 {
		d.Retention = Duration(90 * 24 * time.Hour)
	}
	if d.ScrapeTimeout != 0 && d.ScrapeTimeout > d.ScrapeInterval {
		v.errorf([]any{"defaults", "scrape_timeout"}, "scrape_timeout %s is longer than scrape_interval %s", d.ScrapeTimeout, d.ScrapeInterval)
	}
	defLimits := v.limits([]any{"defaults", "limits"}, d.Limits, DefaultLimits)
	c.defaultLimits = defLimits

	switch c.Ticketing.Backend {
	case "":
		c.Ticketing.Backend = "builtin"
	default:
		if !slices.Contains(backends, c.Ticketing.Backend) {
			v.errorf([]any{"ticketing", "backend"}, "unknown ticketing backend %q (want builtin or remedy)", c.Ticketing.Backend)
		}
	}
	if c.Ticketing.ReopenWindow == 0 {
		c.Ticketing.ReopenWindow = Duration(time.Hour)
	}
	if c.Ticketing.FlapWindow == 0 {
		c.Ticketing.FlapWindow = Duration(time.Hour)
	}
	switch {
	case c.Ticketing.FlapThreshold == 0:
		c.Ticketing.FlapThreshold = 4
	case c.Ticketing.FlapThreshold < 2:
		v.errorf([]any{"ticketing", "flap_threshold"}, "flap_threshold must be at least 2, got %d", c.Ticketing.FlapThreshold)
	}
	for i, l := range c.Ticketing.GroupBy {
		if !model.UTF8Validation.IsValidLabelName(l) || slices.Contains([]string{"agency", "service", "alertname"}, l) {
			v.errorf([]any{"ticketing", "group_by", i}, "group_by label %q must be a label name other than agency, service and alertname (always part of the key)", l)
		}
	}
	if c.Ticketing.Onboarding.Company == "" {
		c.Ticketing.Onboarding.Company = c.Provider.Name
	}
	if c.Ticketing.Onboarding.AssignedGroup == "" {
		c.Ticketing.Onboarding.AssignedGroup = "Onboarding"
	}
	if c.Ticketing.Backend == "remedy" {
		v.url([]any{"ticketing", "remedy", "url"}, c.Ticketing.Remedy.URL, "ticketing.remedy.url")
		if c.Ticketing.Remedy.Username == "" {
			v.errorf([]any{"ticketing", "remedy"}, "ticketing.remedy.username is required with the remedy backend")
		}
		if r := c.Ticketing.Remedy.MaxRequestsPerSecond; r < 0 {
			v.errorf([]any{"ticketing", "remedy", "max_requests_per_second"}, "ticketing.remedy.max_requests_per_second must not be negative, got %v", r)
		}
	}
	if c.Grafana.URL != "" {
		v.url([]any{"grafana", "url"}, c.Grafana.URL, "grafana.url")
	}
	if c.Grafana.DatasourceURL != "" {
		v.url([]any{"grafana", "datasource_url"}, c.Grafana.DatasourceURL, "grafana.datasource_url")
	}
	routeNames := map[string]bool{}
	for i, r := range c.Notifications {
		p := []any{"notifications", i}
		if r == nil {
			v.errorf(p, "empty notification route")
			continue
		}
		if !credNameRe.MatchString(r.Name) {
			v.errorf(at(p, "name"), "notification route name %q must match [A-Za-z0-9_-]{1,64}", r.Name)
		} else if routeNames[r.Name] {
			v.errorf(at(p, "name"), "duplicate notification route %q", r.Name)
		}
		routeNames[r.Name] = true
		if r.MinPriority != "" && !slices.Contains(priorities, r.MinPriority) {
			v.errorf(at(p, "min_priority"), "min_priority %q must be one of Critical, High, Medium, Low", r.MinPriority)
		}
		for j, e := range r.Events {
			if !slices.Contains(notifyEvents, e) {
				v.errorf(at(p, "events", j), "unknown event %q (want one of %s)", e, strings.Join(notifyEvents, ", "))
			}
		}
		if r.Webhook == nil && r.Email == nil && r.Alertmanager == nil {
			v.errorf(p, "notification route %q needs a webhook, email or alertmanager receiver", r.Name)
		}
		if r.Webhook != nil {
			v.url(at(p, "webhook", "url"), r.Webhook.URL, "webhook url")
		}
		if r.Alertmanager != nil {
			v.url(at(p, "alertmanager", "url"), r.Alertmanager.URL, "alertmanager url")
		}
		if r.Email != nil {
			if len(r.Email.To) == 0 || r.Email.From == "" {
				v.errorf(at(p, "email"), "email receiver needs to and from")
			}
			if _, _, err := net.SplitHostPort(r.Email.Smarthost); err != nil {
				v.errorf(at(p, "email", "smarthost"), "smarthost %q must be host:port", r.Email.Smarthost)
			}
		}
	}
	for i, rw := range c.RemoteWrite {
		v.url([]any{"remote_write", i, "url"}, rw.URL, "remote_write url")
		if i > 0 {
			v.errorf([]any{"remote_write", i}, "only one remote_write entry is supported (the scale-out engine)")
		}
	}

	for i, a := range c.Agencies {
		p := []any{"agencies", i}
		if a == nil {
			v.errorf(p, "empty agency entry")
			continue
		}
		if !idRe.MatchString(a.ID) {
			v.errorf(at(p, "id"), "agency id %q must match [a-z0-9-]{1,32}", a.ID)
		} else if a.ID == ProviderID {
			v.errorf(at(p, "id"), "agency id %q is the provider's own (its rules' incidents)", a.ID)
		} else if _, dup := c.byID[a.ID]; dup {
			v.errorf(at(p, "id"), "duplicate agency id %q", a.ID)
		} else {
			c.byID[a.ID] = a
		}
		if a.Name == "" {
			v.errorf(p, "agency %q: name is required", a.ID)
		}
		if !slices.Contains(phases, a.Phase) {
			v.errorf(at(p, "phase"), "agency %q: phase %q must be one of plan, build, run", a.ID, a.Phase)
		}
		a.location = loc
		if a.Timezone != "" {
			if l, err := time.LoadLocation(a.Timezone); err != nil {
				v.errorf(at(p, "timezone"), "agency %q: unknown time zone %q", a.ID, a.Timezone)
			} else {
				a.location = l
			}
		}
		if a.Phase == PhaseRun && c.Ticketing.Backend == "remedy" && a.Remedy.Company == "" {
			v.errorf(at(p, "remedy"), "agency %q: remedy.company is required in phase run with the remedy backend", a.ID)
		}
		v.remedy(at(p, "remedy"), a.ID, a.Remedy)
		if a.Retention == 0 {
			a.Retention = d.Retention
		}
		addCreds(at(p, "credentials"), a.Credentials, Identity{Role: RoleAgency, Agency: a.ID})
		a.limits = v.limits(at(p, "limits"), a.Limits, defLimits)
		v.services(c, a, p)
		v.maintenance(a, p)
		for j, rc := range a.RelabelConfigs {
			rp := at(p, "relabel_configs", j)
			if rc == nil {
				v.errorf(rp, "agency %q: empty relabel config", a.ID)
				continue
			}
			if err := rc.Validate(model.UTF8Validation); err != nil {
				v.errorf(rp, "agency %q: relabel config: %v", a.ID, err)
			}
			if slices.Contains(reservedLbls, rc.TargetLabel) {
				v.errorf(at(rp, "target_label"), "agency %q: relabel_configs may not write the %q label (Samdrift sets it)", a.ID, rc.TargetLabel)
			}
		}
		for j, rf := range a.RuleFiles {
			if rf == "" {
				v.errorf(at(p, "rule_files", j), "agency %q: empty rule file name", a.ID)
			}
		}
	}
}

func (v *validator) limits(path []any, lc LimitsConfig, base Limits) Limits {
	l := base
	for _, f := range []struct {
		name string
		val  *float64
		dst  *float64
	}{
		{"ingestion_rate", lc.IngestionRate, &l.IngestionRate},
		{"alert_ingestion_rate", lc.AlertIngestionRate, &l.AlertIngestionRate},
	} {
		if f.val == nil {
			continue
		}
		if *f.val <= 0 {
			v.errorf(at(path, f.name), "%s must be positive, got %v", f.name, *f.val)
		}
		*f.dst = *f.val
	}
	ints := []struct {
		name string
		val  *int
		dst  *int
	}{
		{"ingestion_burst_size", lc.IngestionBurstSize, &l.IngestionBurstSize},
		{"max_global_series_per_user", lc.MaxGlobalSeriesPerUser, &l.MaxGlobalSeriesPerUser},
		{"max_label_names_per_series", lc.MaxLabelNamesPerSeries, &l.MaxLabelNamesPerSeries},
		{"max_label_value_length", lc.MaxLabelValueLength, &l.MaxLabelValueLength},
		{"max_samples_per_request", lc.MaxSamplesPerRequest, &l.MaxSamplesPerRequest},
		{"alert_ingestion_burst_size", lc.AlertIngestionBurstSize, &l.AlertIngestionBurstSize},
		{"max_alerts_per_request", lc.MaxAlertsPerRequest, &l.MaxAlertsPerRequest},
		{"max_concurrent_queries", lc.MaxConcurrentQueries, &l.MaxConcurrentQueries},
		{"max_outstanding_requests_per_tenant", lc.MaxOutstandingRequestsPerTenant, &l.MaxOutstandingRequestsPerTenant},
		{"max_fetched_series_per_query", lc.MaxFetchedSeriesPerQuery, &l.MaxFetchedSeriesPerQuery},
		{"max_samples_per_query", lc.MaxSamplesPerQuery, &l.MaxSamplesPerQuery},
		{"max_query_expression_size_bytes", lc.MaxQueryExpressionSizeBytes, &l.MaxQueryExpressionSizeBytes},
	}
	for _, f := range ints {
		if f.val == nil {
			continue
		}
		if *f.val <= 0 {
			v.errorf(at(path, f.name), "%s must be positive, got %d", f.name, *f.val)
		}
		*f.dst = *f.val
	}
	return l
}

func (v *validator) services(c *Catalogue, a *Agency, p []any) {
	seen := map[string]bool{}
	for j, s := range a.Services {
		sp := at(p, "services", j)
		if s == nil {
			v.errorf(sp, "agency %q: empty service entry", a.ID)
			continue
		}
		if !idRe.MatchString(s.ID) {
			v.errorf(at(sp, "id"), "agency %q: service id %q must match [a-z0-9-]{1,32}", a.ID, s.ID)
		} else if seen[s.ID] {
			v.errorf(at(sp, "id"), "agency %q: duplicate service id %q", a.ID, s.ID)
		}
		seen[s.ID] = true
		if s.Name == "" {
			v.errorf(sp, "agency %q service %q: name is required", a.ID, s.ID)
		}
		if s.Remedy != nil {
			v.remedy(at(sp, "remedy"), a.ID, *s.Remedy)
		}
		if !slices.Contains(tiers, s.Tier) {
			v.errorf(at(sp, "tier"), "agency %q service %q: tier %q must be one of critical, high, medium, low", a.ID, s.ID, s.Tier)
		}
		if s.SLA != nil {
			if s.SLA.Availability <= 0 || s.SLA.Availability >= 100 {
				v.errorf(at(sp, "sla", "availability"), "agency %q service %q: sla.availability %v must be a percentage above 0 and below 100", a.ID, s.ID, s.SLA.Availability)
			}
			if l := s.SLA.Latency; l != nil {
				lp := at(sp, "sla", "latency")
				if !model.LegacyValidation.IsValidMetricName(l.Histogram) || strings.HasSuffix(l.Histogram, "_bucket") {
					v.errorf(at(lp, "histogram"), "agency %q service %q: sla.latency.histogram %q must be a metric name (the histogram's, without _bucket)", a.ID, s.ID, l.Histogram)
				}
				if l.Threshold <= 0 || math.IsInf(l.Threshold, 0) || math.IsNaN(l.Threshold) {
					v.errorf(at(lp, "threshold"), "agency %q service %q: sla.latency.threshold %v must be a positive number of seconds", a.ID, s.ID, l.Threshold)
				}
				if l.Objective <= 0 || l.Objective >= 100 {
					v.errorf(at(lp, "objective"), "agency %q service %q: sla.latency.objective %v must be a percentage above 0 and below 100", a.ID, s.ID, l.Objective)
				}
			}
			if s.SLA.ServiceHours != "" {
				if _, err := ParseServiceHours(s.SLA.ServiceHours); err != nil {
					v.errorf(at(sp, "sla", "service_hours"), "agency %q service %q: service_hours: %v", a.ID, s.ID, err)
				}
			}
		}
		for k, sc := range s.Scrape {
			scp := at(sp, "scrape", k)
			if len(sc.Targets) == 0 {
				v.errorf(scp, "agency %q service %q: scrape entry without targets", a.ID, s.ID)
			}
			for t, target := range sc.Targets {
				if _, _, err := net.SplitHostPort(target); err != nil {
					v.errorf(at(scp, "targets", t), "agency %q service %q: scrape target %q must be host:port", a.ID, s.ID, target)
				}
			}
			if sc.MetricsPath != "" && sc.MetricsPath[0] != '/' {
				v.errorf(at(scp, "metrics_path"), "agency %q service %q: metrics_path %q must start with /", a.ID, s.ID, sc.MetricsPath)
			}
			if sc.Scheme != "" && !slices.Contains(schemes, sc.Scheme) {
				v.errorf(at(scp, "scheme"), "agency %q service %q: scheme %q must be http or https", a.ID, s.ID, sc.Scheme)
			}
			if sc.ScrapeTimeout != 0 && time.Duration(sc.ScrapeTimeout) > c.ScrapeInterval(sc) {
				v.errorf(at(scp, "scrape_timeout"), "agency %q service %q: scrape_timeout %s is longer than the scrape interval %s", a.ID, s.ID, sc.ScrapeTimeout, c.ScrapeInterval(sc))
			}
			v.scrapeConfig(c, a, s, scp, sc)
		}
		for k, pr := range s.Probes {
			v.probe(a, s, at(sp, "probes", k), pr)
		}
	}
}

func (v *validator) probe(a *Agency, s *Service, pp []any, pr Probe) {
	kinds := 0
	for _, set := range []bool{pr.HTTP != "", pr.TCP != "", pr.DNS != ""} {
		if set {
			kinds++
		}
	}
	if kinds != 1 {
		v.errorf(pp, "agency %q service %q: a probe needs exactly one of http, tcp, dns", a.ID, s.ID)
		return
	}
	switch {
	case pr.HTTP != "":
		u, err := url.Parse(pr.HTTP)
		if err != nil || !slices.Contains(schemes, u.Scheme) || u.Host == "" {
			v.errorf(at(pp, "http"), "agency %q service %q: probe URL %q must be an absolute http(s) URL", a.ID, s.ID, pr.HTTP)
		}
		if pr.ExpectBody != "" {
			if _, err := regexp.Compile(pr.ExpectBody); err != nil {
				v.errorf(at(pp, "expect_body"), "agency %q service %q: expect_body: %v", a.ID, s.ID, err)
			}
		}
		for i, st := range pr.ExpectStatus {
			if st < 100 || st > 599 {
				v.errorf(at(pp, "expect_status", i), "agency %q service %q: expect_status %d is not an HTTP status", a.ID, s.ID, st)
			}
		}
	case pr.TCP != "":
		if _, _, err := net.SplitHostPort(pr.TCP); err != nil {
			v.errorf(at(pp, "tcp"), "agency %q service %q: tcp probe %q must be host:port", a.ID, s.ID, pr.TCP)
		}
	case pr.DNS != "":
		if pr.QueryName == "" {
			v.errorf(pp, "agency %q service %q: dns probe needs query_name", a.ID, s.ID)
		}
	}
	if pr.Timeout != 0 && pr.Interval != 0 && pr.Timeout > pr.Interval {
		v.errorf(at(pp, "timeout"), "agency %q service %q: probe timeout %s is longer than its interval %s", a.ID, s.ID, pr.Timeout, pr.Interval)
	}
}

func (v *validator) maintenance(a *Agency, p []any) {
	for j, m := range a.Maintenance {
		mp := at(p, "maintenance", j)
		if m.Name == "" {
			v.errorf(mp, "agency %q: maintenance window needs a name", a.ID)
		}
		oneOff := !m.Start.IsZero() || !m.End.IsZero()
		switch {
		case m.Schedule != "" && oneOff:
			v.errorf(mp, "agency %q maintenance %q: give either schedule or start and end, not both", a.ID, m.Name)
		case m.Schedule != "":
			if _, err := ParseSchedule(m.Schedule); err != nil {
				v.errorf(at(mp, "schedule"), "agency %q maintenance %q: %v", a.ID, m.Name, err)
			}
		case m.Start.IsZero() || m.End.IsZero():
			v.errorf(mp, "agency %q maintenance %q: needs schedule, or both start and end", a.ID, m.Name)
		case !m.End.After(m.Start):
			v.errorf(at(mp, "end"), "agency %q maintenance %q: end %s is not after start %s", a.ID, m.Name, m.End.Format(time.RFC3339), m.Start.Format(time.RFC3339))
		}
	}
}

func (v *validator) url(path []any, raw, what string) {
	u, err := url.Parse(raw)
	if raw == "" || err != nil || !slices.Contains(schemes, u.Scheme) || u.Host == "" {
		v.errorf(path, "%s %q must be an absolute http(s) URL", what, raw)
	}
}

// HashToken returns the catalogue form (token_sha256) of a token.
func HashToken(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// remedyFieldMax is the length of Remedy's Company and support group
// character fields (254 on the Foundation forms).
const remedyFieldMax = 254

// remedy checks the Remedy names of an agency or service: Remedy refuses
// an incident naming a company it does not know, so a typo costs incidents.
func (v *validator) remedy(p []any, agency string, r Remedy) {
	for _, f := range []struct{ key, val string }{
		{"company", r.Company}, {"support_company", r.SupportCompany},
		{"support_organization", r.SupportOrganization}, {"assigned_group", r.AssignedGroup},
	} {
		switch {
		case f.val == "":
		case strings.TrimSpace(f.val) != f.val:
			v.errorf(at(p, f.key), "agency %q: remedy.%s %q has leading or trailing spaces", agency, f.key, f.val)
		case len(f.val) > remedyFieldMax:
			v.errorf(at(p, f.key), "agency %q: remedy.%s is longer than Remedy's %d characters", agency, f.key, remedyFieldMax)
		case strings.IndexFunc(f.val, func(r rune) bool { return unicode.IsControl(r) || r == utf8.RuneError }) >= 0:
			v.errorf(at(p, f.key), "agency %q: remedy.%s %q contains control characters", agency, f.key, f.val)
		}
	}
}

// scrapeConfig checks a scrape entry's Prometheus fields with Prometheus's
// own config loader, refuses secrets written into the catalogue (it is
// kept in version control: secrets come from files), and resolves the
// files' paths against the catalogue's directory.
func (v *validator) scrapeConfig(c *Catalogue, a *Agency, s *Service, scp []any, sc Scrape) {
	dir := filepath.Dir(v.file)
	if t := sc.TLSConfig; t != nil {
		if t.Key != "" || t.CA != "" || t.Cert != "" {
			v.errorf(at(scp, "tls_config"), "agency %q service %q: tls_config: give ca_file, cert_file and key_file, not the PEM itself", a.ID, s.ID)
		}
		t.SetDirectory(dir)
	}
	if au := sc.Authorization; au != nil {
		if au.Credentials != "" {
			v.errorf(at(scp, "authorization", "credentials"), "agency %q service %q: authorization: credentials go in a file (credentials_file), not in the catalogue", a.ID, s.ID)
		}
		au.SetDirectory(dir)
	}
	if ba := sc.BasicAuth; ba != nil {
		if ba.Password != "" {
			v.errorf(at(scp, "basic_auth", "password"), "agency %q service %q: basic_auth: the password goes in a file (password_file), not in the catalogue", a.ID, s.ID)
		}
		ba.SetDirectory(dir)
	}
	raw, err := yaml.Marshal(map[string]any{"scrape_configs": []any{c.PrometheusConfig(sc, a.ID+"/"+s.ID)}})
	if err != nil {
		v.errorf(scp, "agency %q service %q: scrape entry: %v", a.ID, s.ID, err)
		return
	}
	if _, err := promconfig.Load(string(raw), slog.New(slog.DiscardHandler)); err != nil {
		// Point at the field the loader names (the entry's line if none).
		where, msg := scp, err.Error()
		for _, k := range []string{"fallback_scrape_protocol", "scrape_protocols", "metric_relabel_configs", "scrape_native_histograms",
			"tls_config", "authorization", "basic_auth", "sample_limit", "label_limit", "scheme", "params", "metrics_path"} {
			if strings.Contains(msg, k) {
				where = at(scp, k)
				break
			}
		}
		if len(where) == len(scp) && (strings.Contains(msg, "relabel") || strings.Contains(msg, "regex")) {
			where = at(scp, "metric_relabel_configs")
		}
		v.errorf(where, "agency %q service %q: scrape entry: %v", a.ID, s.ID, err)
	}
}
