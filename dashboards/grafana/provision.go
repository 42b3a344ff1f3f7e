// Package grafana provisions Samdrift's dashboards into Grafana with
// grafana-openapi-client-go: one organisation per agency holding one
// Prometheus data source that reaches Samdrift's query API with a read-only
// credential for that agency alone, a folder and the agency's SLA
// dashboard; and a NOC organisation with the ops data source and the
// overview. Grafana's own documentation is clear that a Viewer can query any
// data source of their organisation, so an organisation per agency is the
// isolation boundary.
package grafana

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/go-openapi/strfmt"
	goapi "github.com/grafana/grafana-openapi-client-go/client"
	"github.com/grafana/grafana-openapi-client-go/models"

	"github.com/samdrift/samdrift/catalogue"
	"github.com/samdrift/samdrift/dashboards"
)

// Options configure provisioning.
type Options struct {
	URL      string
	Username string
	Password string
	// DatasourceURL is how Grafana reaches Samdrift's query API (the
	// /prometheus prefix included).
	DatasourceURL string
	// Key derives the data sources' credentials (catalogue.GrafanaToken).
	Key []byte
	// OrgPrefix names the organisations Samdrift manages.
	OrgPrefix string
	// Prune deletes organisations of agencies no longer in the catalogue.
	Prune bool
	// Progress receives a line per agency.
	Progress   io.Writer
	HTTPClient *http.Client
}

// Result is what provisioning did to one organisation.
type Result struct {
	Org     string
	Agency  string // "" for the NOC
	Actions []string
	Err     error
}

// Changed reports whether anything was created, updated or deleted.
func (r Result) Changed() bool {
	for _, a := range r.Actions {
		if !strings.HasSuffix(a, "unchanged") {
			return true
		}
	}
	return false
}

// Summary is the outcome of a run.
type Summary struct {
	Results []Result
	// Removed lists organisations of agencies no longer in the catalogue
	// (deleted with Prune).
	Removed []string
}

// Failed returns the results with errors.
func (s Summary) Failed() []Result {
	var out []Result
	for _, r := range s.Results {
		if r.Err != nil {
			out = append(out, r)
		}
	}
	return out
}

// Provisioner talks to one Grafana.
type Provisioner struct {
	o   Options
	api *goapi.GrafanaHTTPAPI
}

// New returns a provisioner.
func New(o Options) (*Provisioner, error) {
	u, err := url.Parse(o.URL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("grafana url %q: want http(s)://host[:port]", o.URL)
	}
	if o.OrgPrefix == "" {
		o.OrgPrefix = "Samdrift"
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if len(o.Key) == 0 {
		return nil, errors.New("no credential key for Grafana's data sources")
	}
	cfg := &goapi.TransportConfig{
		Host: u.Host, BasePath: strings.TrimSuffix(u.Path, "/") + "/api", Schemes: []string{u.Scheme},
		BasicAuth: url.UserPassword(o.Username, o.Password), Client: o.HTTPClient, NumRetries: 0,
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 30 * time.Second}
	}
	return &Provisioner{o: o, api: goapi.NewHTTPClientWithConfig(strfmt.Default, cfg)}, nil
}

// NOCOrg and AgencyOrg name the organisations Samdrift manages.
func (p *Provisioner) NOCOrg() string { return p.o.OrgPrefix + " NOC" }

// AgencyOrg is the organisation of an agency.
func (p *Provisioner) AgencyOrg(a *catalogue.Agency) string {
	return fmt.Sprintf("%s: %s (%s)", p.o.OrgPrefix, a.Name, a.ID)
}

// Check verifies that Grafana answers and the admin credentials work.
func (p *Provisioner) Check() error {
	if _, err := p.api.Health.GetHealth(); err != nil {
		return fmt.Errorf("grafana unreachable at %s: %w", p.o.URL, err)
	}
	if _, err := p.api.Orgs.SearchOrgs(nil); err != nil {
		if hasCode(err, http.StatusUnauthorized) || hasCode(err, http.StatusForbidden) {
			return fmt.Errorf("grafana at %s refused the admin user %q: wrong user or password, or not a server admin", p.o.URL, p.o.Username)
		}
		return fmt.Errorf("grafana at %s: %w", p.o.URL, err)
	}
	return nil
}

// Run provisions every agency that accepts data and the NOC. It carries on
// past a failing agency and reports each one's actions and error.
func (p *Provisioner) Run(ctx context.Context, c *catalogue.Catalogue) (Summary, error) {
	var sum Summary
	if err := p.Check(); err != nil {
		return sum, err
	}
	noc, agencies := dashboards.All(c)
	res := p.provision(ctx, p.NOCOrg(), "", catalogue.GrafanaToken(p.o.Key, catalogue.GrafanaSubjectOps), noc)
	p.report(res)
	sum.Results = append(sum.Results, res)
	ids := make([]string, 0, len(agencies))
	for id := range agencies {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	wanted := map[string]bool{p.NOCOrg(): true}
	for _, id := range ids {
		a := c.Agency(id)
		name := p.AgencyOrg(a)
		wanted[name] = true
		res := p.provision(ctx, name, id, catalogue.GrafanaToken(p.o.Key, id), agencies[id])
		p.report(res)
		sum.Results = append(sum.Results, res)
	}
	removed, err := p.stale(wanted)
	if err != nil {
		return sum, err
	}
	for _, o := range removed {
		if p.o.Prune {
			if _, err := p.api.Orgs.DeleteOrgByID(o.ID); err != nil {
				return sum, fmt.Errorf("prune organisation %q: %w", o.Name, err)
			}
			fmt.Fprintf(p.o.Progress, "%s: deleted (agency no longer in the catalogue)\n", o.Name)
		} else {
			fmt.Fprintf(p.o.Progress, "%s: agency no longer in the catalogue; kept (use --prune to delete)\n", o.Name)
		}
		sum.Removed = append(sum.Removed, o.Name)
	}
	return sum, nil
}

func (p *Provisioner) report(r Result) {
	who := r.Agency
	if who == "" {
		who = "NOC"
	}
	if r.Err != nil {
		fmt.Fprintf(p.o.Progress, "%-12s FAILED after [%s]: %v\n", who, strings.Join(r.Actions, ", "), r.Err)
		return
	}
	fmt.Fprintf(p.o.Progress, "%-12s %s\n", who, strings.Join(r.Actions, ", "))
}

// stale returns the organisations with Samdrift's prefix that the
// catalogue no longer has.
func (p *Provisioner) stale(wanted map[string]bool) ([]*models.OrgDTO, error) {
	ok, err := p.api.Orgs.SearchOrgs(nil)
	if err != nil {
		return nil, err
	}
	var out []*models.OrgDTO
	for _, o := range ok.Payload {
		if strings.HasPrefix(o.Name, p.o.OrgPrefix+": ") && !wanted[o.Name] {
			out = append(out, o)
		}
	}
	return out, nil
}

// provision makes one organisation hold the data source, folder and dashboard.
func (p *Provisioner) provision(ctx context.Context, orgName, agency, token string, d dashboards.Dashboard) (res Result) {
	res = Result{Org: orgName, Agency: agency}
	do := func(step string, f func() (string, error)) bool {
		if res.Err != nil {
			return false
		}
		action, err := f()
		if err != nil {
			res.Err = fmt.Errorf("%s: %w", step, err)
			return false
		}
		res.Actions = append(res.Actions, step+" "+action)
		return true
	}
	var orgID int64
	do("org", func() (string, error) {
		var action string
		var err error
		orgID, action, err = p.ensureOrg(orgName)
		return action, err
	})
	api := p.api.WithOrgID(orgID)
	do("data source", func() (string, error) { return p.ensureDatasource(api, orgName, token) })
	do("folder", func() (string, error) { return p.ensureFolder(api) })
	do("dashboard", func() (string, error) { return p.ensureDashboard(api, d) })
	return res
}

func (p *Provisioner) ensureOrg(name string) (int64, string, error) {
	ok, err := p.api.Orgs.GetOrgByName(name)
	if err == nil {
		return ok.Payload.ID, "unchanged", nil
	}
	if !hasCode(err, http.StatusNotFound) {
		return 0, "", err
	}
	created, err := p.api.Orgs.CreateOrg(&models.CreateOrgCommand{Name: name})
	if err != nil {
		if hasCode(err, http.StatusConflict) {
			return 0, "", fmt.Errorf("organisation %q exists but cannot be read (name clash): %w", name, err)
		}
		return 0, "", err
	}
	return *created.Payload.OrgID, "created", nil
}

const datasourceName = "Samdrift"

// credentialTag identifies the credential in the data source's jsonData:
// the secret cannot be read back, so provisioning compares this instead.
func credentialTag(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:8])
}

func (p *Provisioner) ensureDatasource(api *goapi.GrafanaHTTPAPI, orgName, token string) (string, error) {
	jsonData := map[string]any{
		"httpMethod": "POST", "httpHeaderName1": "Authorization", "prometheusType": "Prometheus",
		"timeInterval": "15s", "samdriftCredential": credentialTag(token),
	}
	secure := map[string]string{"httpHeaderValue1": "Bearer " + token}
	list, err := api.Datasources.GetDataSources()
	if err != nil {
		return "", err
	}
	var ours *models.DataSourceListItemDTO
	var others []string
	for _, ds := range list.Payload {
		switch {
		case ds.UID == dashboards.DatasourceUID:
			ours = ds
		case ds.Name == datasourceName:
			// Left over from a run with another uid: ours by name, replaced.
			if _, err := api.Datasources.DeleteDataSourceByUID(ds.UID); err != nil {
				return "", fmt.Errorf("remove leftover data source %q (uid %s): %w", ds.Name, ds.UID, err)
			}
		default:
			others = append(others, ds.Name)
		}
	}
	if ours == nil {
		if len(others) > 0 {
			return "", fmt.Errorf("organisation %q exists and was not made by Samdrift (it holds data sources %s): rename it or set grafana.org_prefix", orgName, strings.Join(others, ", "))
		}
		_, err := api.Datasources.AddDataSource(&models.AddDataSourceCommand{
			Name: datasourceName, UID: dashboards.DatasourceUID, Type: "prometheus", Access: "proxy",
			URL: p.o.DatasourceURL, IsDefault: true, JSONData: jsonData, SecureJSONData: secure,
		})
		if err != nil {
			return "", err
		}
		return "created", nil
	}
	cur, err := api.Datasources.GetDataSourceByUID(dashboards.DatasourceUID)
	if err != nil {
		return "", err
	}
	ds := cur.Payload
	if ds.Name == datasourceName && ds.Type == "prometheus" && ds.URL == p.o.DatasourceURL && string(ds.Access) == "proxy" &&
		sameJSON(ds.JSONData, jsonData) && ds.SecureJSONFields["httpHeaderValue1"] {
		return "unchanged", nil
	}
	_, err = api.Datasources.UpdateDataSourceByUID(dashboards.DatasourceUID, &models.UpdateDataSourceCommand{
		Name: datasourceName, UID: dashboards.DatasourceUID, Type: "prometheus", Access: "proxy",
		URL: p.o.DatasourceURL, IsDefault: true, JSONData: jsonData, SecureJSONData: secure, Version: ds.Version,
	})
	if err != nil {
		return "", err
	}
	return "updated", nil
}

func sameJSON(a, b any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	var ma, mb any
	_ = json.Unmarshal(ja, &ma)
	_ = json.Unmarshal(jb, &mb)
	x, _ := json.Marshal(ma)
	y, _ := json.Marshal(mb)
	return string(x) == string(y)
}

const folderUID = "samdrift"

func (p *Provisioner) ensureFolder(api *goapi.GrafanaHTTPAPI) (string, error) {
	if _, err := api.Folders.GetFolderByUID(folderUID); err == nil {
		return "unchanged", nil
	} else if !hasCode(err, http.StatusNotFound) {
		return "", err
	}
	if _, err := api.Folders.CreateFolder(&models.CreateFolderCommand{UID: folderUID, Title: "Samdrift"}); err != nil {
		return "", err
	}
	return "created", nil
}

func (p *Provisioner) ensureDashboard(api *goapi.GrafanaHTTPAPI, d dashboards.Dashboard) (string, error) {
	action := "created"
	cur, err := api.Dashboards.GetDashboardByUID(d.UID())
	switch {
	case err == nil:
		if hashOf(cur.Payload.Dashboard) == d.Samdrift.Hash {
			return "unchanged", nil
		}
		action = "updated"
	case !hasCode(err, http.StatusNotFound):
		return "", err
	}
	var body map[string]any
	b, _ := json.Marshal(d)
	_ = json.Unmarshal(b, &body)
	if _, err := api.Dashboards.PostDashboard(&models.SaveDashboardCommand{
		Dashboard: body, FolderUID: folderUID, Overwrite: true, Message: "provisioned by samdrift",
	}); err != nil {
		return "", err
	}
	return action, nil
}

// hashOf returns the Samdrift fingerprint of a stored dashboard.
func hashOf(v any) string {
	m, _ := v.(map[string]any)
	fp, _ := m["samdrift"].(map[string]any)
	h, _ := fp["hash"].(string)
	return h
}

// hasCode reports whether err is an API response with the status code.
func hasCode(err error, code int) bool {
	var c interface{ IsCode(int) bool }
	if errors.As(err, &c) {
		return c.IsCode(code)
	}
	var api interface{ Code() int }
	if errors.As(err, &api) {
		return api.Code() == code
	}
	return strings.Contains(err.Error(), fmt.Sprintf("(status %d)", code))
}
