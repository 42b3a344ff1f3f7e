package main

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"golang.org/x/crypto/bcrypt"
	"gopkg.in/yaml.v3"

	"github.com/samdrift/samdrift/bus"
	"github.com/samdrift/samdrift/catalogue"
	"github.com/samdrift/samdrift/internal/audit"
	"github.com/samdrift/samdrift/store"
	"github.com/samdrift/samdrift/ticketing/remedy"
)

// auditFlags are the flags every catalogue-changing command shares.
type auditFlags struct {
	who, log *string
}

func addAuditFlags(cmd *kingpin.CmdClause) auditFlags {
	return auditFlags{
		who: cmd.Flag("who", "Who does this, for the audit log (default: the login name).").String(),
		log: cmd.Flag("audit-log", "Audit log file (default: audit.log beside the catalogue).").Envar("SAMDRIFT_AUDIT_LOG").String(),
	}
}

func (f auditFlags) open(catalogueFile string) *audit.Log {
	p := *f.log
	if p == "" {
		p = filepath.Join(filepath.Dir(catalogueFile), "audit.log")
	}
	return audit.Open(p)
}

// onboardAgency is the catalogue entry onboard writes, in the catalogue's
// key order.
type onboardAgency struct {
	ID          string         `yaml:"id"`
	Name        string         `yaml:"name"`
	Phase       string         `yaml:"phase"`
	Timezone    string         `yaml:"timezone,omitempty"`
	Remedy      *onboardRemedy `yaml:"remedy,omitempty"`
	Credentials []onboardCred  `yaml:"credentials"`
	Services    []*yaml.Node   `yaml:"services,omitempty"`
}

type onboardRemedy struct {
	Company             string `yaml:"company,omitempty"`
	SupportCompany      string `yaml:"support_company,omitempty"`
	SupportOrganization string `yaml:"support_organization,omitempty"`
	AssignedGroup       string `yaml:"assigned_group,omitempty"`
}

type onboardCred struct {
	Name        string `yaml:"name"`
	TokenSHA256 string `yaml:"token_sha256"`
}

type onboardSvc struct {
	ID     string              `yaml:"id"`
	Name   string              `yaml:"name"`
	Tier   string              `yaml:"tier"`
	SLA    map[string]any      `yaml:"sla,omitempty"`
	Probes []map[string]string `yaml:"probes,omitempty"`
}

// servicesFromFile reads a services YAML file: a list of services in the
// catalogue's format, or a mapping with a services key.
func servicesFromFile(path string) ([]*yaml.Node, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(doc.Content) == 0 {
		return nil, fmt.Errorf("%s: no services", path)
	}
	n := doc.Content[0]
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == "services" {
				n = n.Content[i+1]
			}
		}
	}
	if n.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("%s:%d: want a list of services (or a mapping with a services list)", path, n.Line)
	}
	return n.Content, nil
}

// flagServices builds services from --service ID=NAME and --probe ID=TARGET.
func flagServices(svcs, probes []string, tier string, availability float64) ([]*yaml.Node, error) {
	var out []onboardSvc
	idx := map[string]int{}
	for _, s := range svcs {
		id, name, ok := strings.Cut(s, "=")
		if !ok || id == "" || name == "" {
			return nil, fmt.Errorf("--service %q: want ID=NAME", s)
		}
		idx[id] = len(out)
		out = append(out, onboardSvc{ID: id, Name: name, Tier: tier, SLA: map[string]any{"availability": availability}})
	}
	for _, p := range probes {
		id, target, ok := strings.Cut(p, "=")
		i, known := idx[id]
		if !ok || target == "" {
			return nil, fmt.Errorf("--probe %q: want SERVICE=URL or SERVICE=host:port", p)
		}
		if !known {
			return nil, fmt.Errorf("--probe %q: no --service %s", p, id)
		}
		kind := "tcp"
		if strings.HasPrefix(target, "http://") || strings.HasPrefix(target, "https://") {
			kind = "http"
		}
		out[i].Probes = append(out[i].Probes, map[string]string{kind: target})
	}
	var nodes []*yaml.Node
	for _, s := range out {
		var n yaml.Node
		if err := n.Encode(s); err != nil {
			return nil, err
		}
		nodes = append(nodes, &n)
	}
	return nodes, nil
}

func randomSecret(prefix string) (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return prefix + base64.RawURLEncoding.EncodeToString(b), nil
}

func registerAgency(app *kingpin.Application, cmds map[string]func(*slog.Logger) int) {
	ag := app.Command("agency", "Onboard, move and offboard agencies (edits the catalogue file in place).")

	on := ag.Command("onboard", "Add an agency to the catalogue with its credentials, NATS account and Grafana organisation. A running Samdrift picks it up within seconds.")
	onFile := on.Flag("config", "Agency catalogue file.").Required().String()
	id := on.Flag("id", "Agency id ([a-z0-9-], at most 32).").Required().String()
	name := on.Flag("name", "Agency name.").Required().String()
	company := on.Flag("company", "Remedy Company of the agency's incidents.").String()
	supportCompany := on.Flag("support-company", "Remedy Assigned Support Company (default: the provider's onboarding company).").String()
	supportOrg := on.Flag("support-org", "Remedy Assigned Support Organization.").String()
	supportGroup := on.Flag("support-group", "Remedy Assigned Group that works the agency's incidents.").String()
	phase := on.Flag("phase", "Starting phase: plan, build or run.").Default("build").Enum("plan", "build", "run")
	tz := on.Flag("timezone", "Agency time zone for its SLA months and service hours (default: the provider's).").String()
	svcs := on.Flag("service", "A service, as ID=NAME (repeatable).").Strings()
	probes := on.Flag("probe", "A probe of a --service, as ID=URL (HTTP) or ID=host:port (TCP) (repeatable).").Strings()
	tier := on.Flag("tier", "Tier of the --service services: critical, high, medium or low.").Default("medium").Enum("critical", "high", "medium", "low")
	avail := on.Flag("availability", "SLA availability objective of the --service services, in percent.").Default("99.5").Float64()
	svcFile := on.Flag("services", "YAML file with the services, in the catalogue's format (instead of --service).").ExistingFile()
	natsDir := on.Flag("nats-accounts", "Directory of the agencies' NATS account files (default: nats-accounts beside the catalogue).").String()
	noNATS := on.Flag("no-nats-account", "Do not write a NATS account for the agency.").Bool()
	skipRemedy := on.Flag("skip-remedy-check", "Do not ask Remedy whether the company exists.").Bool()
	waitURL := on.Flag("wait", "URL of a running Samdrift: wait until it accepts the new credential.").String()
	onAudit := addAuditFlags(on)
	cmds[on.FullCommand()] = func(*slog.Logger) int {
		return onboard(onboardArgs{file: *onFile, id: *id, name: *name, phase: *phase, tz: *tz,
			rem:  onboardRemedy{Company: *company, SupportCompany: *supportCompany, SupportOrganization: *supportOrg, AssignedGroup: *supportGroup},
			svcs: *svcs, probes: *probes, tier: *tier, avail: *avail, svcFile: *svcFile, natsDir: *natsDir, noNATS: *noNATS,
			skipRemedy: *skipRemedy, waitURL: *waitURL, audit: onAudit})
	}

	ph := ag.Command("phase", "Move an agency to another phase (plan, build, run); recorded in the audit log.")
	phFile := ph.Flag("config", "Agency catalogue file.").Required().String()
	phID := ph.Arg("id", "Agency id.").Required().String()
	phPhase := ph.Arg("phase", "New phase.").Required().Enum("plan", "build", "run")
	phAudit := addAuditFlags(ph)
	cmds[ph.FullCommand()] = func(*slog.Logger) int {
		_, old, err := catalogue.SetPhase(*phFile, *phID, catalogue.Phase(*phPhase))
		if err != nil {
			fmt.Fprintln(os.Stderr, "samdrift agency phase:", err)
			return 1
		}
		if err := phAudit.open(*phFile).Write(audit.Entry{Who: audit.Me(*phAudit.who), Action: "agency_phase", Agency: *phID,
			Detail: map[string]any{"from": old, "to": *phPhase}}); err != nil {
			fmt.Fprintln(os.Stderr, "warning:", err)
		}
		if string(old) == *phPhase {
			fmt.Printf("Agency %s is already in phase %s.\n", *phID, old)
			return 0
		}
		fmt.Printf("Agency %s: phase %s → %s. A running Samdrift applies it within seconds.\n", *phID, old, *phPhase)
		return 0
	}

	off := ag.Command("offboard", "Stop an agency's intake, export its data (TSDB snapshot, incidents) to a directory, then delete it from the store and the catalogue.")
	offFile := off.Flag("config", "Agency catalogue file.").Required().String()
	offID := off.Arg("id", "Agency id.").Required().String()
	yes := off.Flag("yes", "Confirm: the agency's data is deleted after the export.").Bool()
	exportDir := off.Flag("export", "Directory to export the agency's data to.").Required().String()
	api := addAPIFlags(off)
	offNATS := off.Flag("nats-accounts", "Directory of the agencies' NATS account files (default: nats-accounts beside the catalogue).").String()
	wait := off.Flag("timeout", "How long to wait for the running Samdrift to stop the agency's intake.").Default("60s").Duration()
	offAudit := addAuditFlags(off)
	cmds[off.FullCommand()] = func(*slog.Logger) int {
		return offboard(*offFile, *offID, *yes, *exportDir, api, *offNATS, *wait, offAudit)
	}
}

type onboardArgs struct {
	file, id, name, phase, tz string
	rem                       onboardRemedy
	svcs, probes              []string
	tier                      string
	avail                     float64
	svcFile, natsDir          string
	noNATS, skipRemedy        bool
	waitURL                   string
	audit                     auditFlags
}

func onboard(a onboardArgs) int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "samdrift agency onboard:", err)
		fmt.Fprintln(os.Stderr, "Nothing was changed.")
		return 1
	}
	started := time.Now()
	cat, err := catalogue.LoadFile(a.file)
	if err != nil {
		return fail(err)
	}
	if cat.Agency(a.id) != nil {
		return fail(fmt.Errorf("agency %q is already in %s", a.id, a.file))
	}
	entry := onboardAgency{ID: a.id, Name: a.name, Phase: a.phase, Timezone: a.tz}
	if a.rem != (onboardRemedy{}) {
		r := a.rem
		entry.Remedy = &r
	}
	switch {
	case a.svcFile != "" && len(a.svcs) > 0:
		return fail(errors.New("give services either with --service or with --services FILE, not both"))
	case a.svcFile != "":
		if entry.Services, err = servicesFromFile(a.svcFile); err != nil {
			return fail(err)
		}
	default:
		if entry.Services, err = flagServices(a.svcs, a.probes, a.tier, a.avail); err != nil {
			return fail(err)
		}
	}
	if len(a.probes) > 0 && a.svcFile != "" {
		return fail(errors.New("--probe goes with --service; put probes in the services file"))
	}
	// The company must exist in Remedy: an incident for an unknown company
	// is refused there, and found out only at the first outage.
	if a.rem.Company != "" && cat.Ticketing.Backend == "remedy" && !a.skipRemedy {
		if err := checkCompany(cat, a.rem.Company); err != nil {
			return fail(err)
		}
	}
	token, err := newToken()
	if err != nil {
		return fail(err)
	}
	credName := a.id + "-push"
	entry.Credentials = []onboardCred{{Name: credName, TokenSHA256: catalogue.HashToken(token)}}
	body, err := yaml.Marshal(entry)
	if err != nil {
		return fail(err)
	}

	// The NATS account first (refuses to overwrite); the catalogue write is
	// the commit point, and undoes the account if it fails.
	var natsPass, natsFile string
	if !a.noNATS {
		if natsPass, err = randomSecret(""); err != nil {
			return fail(err)
		}
		h, err := bcrypt.GenerateFromPassword([]byte(natsPass), bcrypt.DefaultCost)
		if err != nil {
			return fail(err)
		}
		dir := first(a.natsDir, filepath.Join(filepath.Dir(a.file), "nats-accounts"))
		if natsFile, err = bus.WriteAgencyAccount(dir, a.id, a.id, string(h)); err != nil {
			return fail(err)
		}
	}
	cat, err = catalogue.AddAgency(a.file, body)
	if err != nil {
		if natsFile != "" {
			_ = bus.RemoveAgencyAccount(filepath.Dir(natsFile), a.id)
		}
		return fail(err)
	}
	who := audit.Me(*a.audit.who)
	if err := a.audit.open(a.file).Write(audit.Entry{Who: who, Action: "agency_onboarded", Agency: a.id,
		Detail: map[string]any{"name": a.name, "phase": a.phase, "company": a.rem.Company, "credential": credName, "nats_account": natsFile != "", "services": len(entry.Services)}}); err != nil {
		fmt.Fprintln(os.Stderr, "warning:", err)
	}
	fmt.Printf("Onboarded agency %s (%s) in phase %s into %s.\n\n", a.id, a.name, a.phase, a.file)
	fmt.Printf("Push credential %q (shown only now; the catalogue keeps its SHA-256):\n  token: %s\n", credName, token)
	if natsFile != "" {
		fmt.Printf("\nNATS account %s for publishing to NATS directly (the file keeps a bcrypt hash):\n  user: %s\n  password: %s\n  file: %s (reload the NATS server to apply)\n",
			bus.AccountName(a.id), a.id, natsPass, natsFile)
	}
	ret := 0
	if o, pw := grafanaFromCatalogue(cat, false); o != nil {
		fmt.Println()
		if err := provisionGrafana(cat, *o, pw); err != nil {
			fmt.Fprintln(os.Stderr, "Grafana provisioning failed (the agency is onboarded; run samdrift dashboards provision to finish):", err)
			ret = 1
		}
	}
	if a.waitURL != "" {
		if err := waitAccepted(a.waitURL, token, 30*time.Second); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Printf("\n%s accepts the new credential; onboarding took %.1fs.\n", a.waitURL, time.Since(started).Seconds())
	}
	return ret
}

// checkCompany asks the catalogue's Remedy whether company exists.
func checkCompany(cat *catalogue.Catalogue, company string) error {
	r := cat.Ticketing.Remedy
	pw := os.Getenv("SAMDRIFT_REMEDY_PASSWORD")
	if pw == "" && r.PasswordFile != "" {
		b, err := os.ReadFile(r.PasswordFile)
		if err != nil {
			return fmt.Errorf("remedy password: %w (or --skip-remedy-check)", err)
		}
		pw = strings.TrimRight(string(b), "\r\n")
	}
	c := remedy.New(remedy.Config{URL: r.URL, Username: r.Username, Password: pw, Timeout: 15 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ok, err := c.CompanyExists(ctx, company)
	if err != nil {
		return fmt.Errorf("cannot check company %q in Remedy: %w (or --skip-remedy-check)", company, err)
	}
	if !ok {
		return fmt.Errorf("Remedy at %s has no company %q: have it created there first, or correct --company", r.URL, company)
	}
	return nil
}

// waitAccepted polls a running Samdrift until it accepts token.
func waitAccepted(base, token string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		req, _ := http.NewRequest(http.MethodGet, strings.TrimSuffix(base, "/")+store.APIPrefix+"/labels", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not accept the new credential within %s (is it running on this catalogue?)", base, timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// apiFlags reach a running Samdrift's API.
type apiFlags struct {
	url, token *string
}

func addAPIFlags(cmd *kingpin.CmdClause) apiFlags {
	return apiFlags{
		url:   cmd.Flag("url", "URL of the running Samdrift.").Default("http://127.0.0.1:9470").Envar("SAMDRIFT_URL").String(),
		token: cmd.Flag("token", "Admin (or ops, for reports) bearer token.").Envar("SAMDRIFT_TOKEN").String(),
	}
}

func (f apiFlags) do(ctx context.Context, method, path string) (*http.Response, error) {
	if *f.token == "" {
		return nil, errors.New("need --token (or SAMDRIFT_TOKEN): an admin credential of the running Samdrift")
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(*f.url, "/")+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+*f.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, apiErrorText(b))
	}
	return resp, nil
}

// getJSON decodes the data of a {"status":"success","data":…} answer.
func (f apiFlags) getJSON(ctx context.Context, path string, v any) error {
	resp, err := f.do(ctx, http.MethodGet, path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var env struct {
		Data any `json:"data"`
	}
	env.Data = v
	return decodeJSON(resp.Body, &env)
}

func offboard(file, id string, yes bool, exportDir string, api apiFlags, natsDir string, timeout time.Duration, af auditFlags) int {
	fail := func(format string, args ...any) int {
		fmt.Fprintf(os.Stderr, "samdrift agency offboard: "+format+"\n", args...)
		return 1
	}
	cat, err := catalogue.LoadFile(file)
	if err != nil {
		return fail("%v", err)
	}
	a := cat.Agency(id)
	if a == nil {
		return fail("no agency %q in %s", id, file)
	}
	if !yes {
		fmt.Fprintf(os.Stderr, "samdrift agency offboard: this stops %s's intake, exports its data to %s and then DELETES its metrics, incidents and catalogue entry.\nRun again with --yes to do it. Nothing was changed.\n", id, exportDir)
		return 2
	}
	ctx := context.Background()
	var info struct {
		InCatalogue bool   `json:"in_catalogue"`
		Phase       string `json:"phase"`
	}
	// Reach the running Samdrift before changing anything.
	if err := api.getJSON(ctx, "/api/v1/admin/agencies/"+url.PathEscape(id), &info); err != nil {
		return fail("%v\nNothing was changed.", err)
	}
	if err := os.MkdirAll(exportDir, 0o750); err != nil {
		return fail("%v\nNothing was changed.", err)
	}
	log := af.open(file)
	who := audit.Me(*af.who)

	fmt.Printf("1/4 Stopping intake: phase %s → plan\n", a.Phase)
	if a.Phase != catalogue.PhasePlan {
		if _, old, err := catalogue.SetPhase(file, id, catalogue.PhasePlan); err != nil {
			return fail("%v", err)
		} else {
			_ = log.Write(audit.Entry{Who: who, Action: "agency_phase", Agency: id, Detail: map[string]any{"from": old, "to": "plan", "reason": "offboarding"}})
		}
	}
	deadline := time.Now().Add(timeout)
	for info.Phase != string(catalogue.PhasePlan) {
		if time.Now().After(deadline) {
			return fail("%s still has %s in phase %q after %s; is it running on %s?", *api.url, id, info.Phase, timeout, file)
		}
		time.Sleep(250 * time.Millisecond)
		if err := api.getJSON(ctx, "/api/v1/admin/agencies/"+url.PathEscape(id), &info); err != nil {
			return fail("%v", err)
		}
	}

	fmt.Printf("2/4 Exporting TSDB snapshot and incidents to %s\n", exportDir)
	dest, files, err := exportAgency(ctx, api, id, exportDir)
	if err != nil {
		return fail("export: %v\nThe agency is in phase plan and its data is intact; run offboard again to retry.", err)
	}
	fmt.Printf("    %s (%d files)\n", dest, files)
	_ = log.Write(audit.Entry{Who: who, Action: "agency_exported", Agency: id, Detail: map[string]any{"dir": dest, "files": files}})

	fmt.Println("3/4 Deleting the agency's data from the store")
	resp, err := api.do(ctx, http.MethodDelete, "/api/v1/admin/agencies/"+url.PathEscape(id)+"/data")
	if err != nil {
		return fail("delete: %v\nThe export in %s is complete; run offboard again to retry.", err, dest)
	}
	resp.Body.Close()

	fmt.Println("4/4 Removing the agency from the catalogue and NATS accounts")
	if _, err := catalogue.RemoveAgency(file, id); err != nil {
		return fail("%v", err)
	}
	if err := bus.RemoveAgencyAccount(first(natsDir, filepath.Join(filepath.Dir(file), "nats-accounts")), id); err != nil {
		fmt.Fprintln(os.Stderr, "warning: NATS account:", err)
	}
	_ = log.Write(audit.Entry{Who: who, Action: "agency_offboarded", Agency: id, Detail: map[string]any{"export": dest}})
	if cat, err := catalogue.LoadFile(file); err == nil {
		if o, pw := grafanaFromCatalogue(cat, true); o != nil {
			if err := provisionGrafana(cat, *o, pw); err != nil {
				fmt.Fprintln(os.Stderr, "Grafana: the agency's organisation is not yet deleted:", err)
				return 1
			}
		}
	}
	fmt.Printf("Agency %s offboarded; its data is in %s.\n", id, dest)
	return 0
}

// exportAgency downloads the agency's export and unpacks it into
// <dir>/samdrift-<id>-<time>/, keeping the archive beside it.
func exportAgency(ctx context.Context, api apiFlags, id, dir string) (string, int, error) {
	resp, err := api.do(ctx, http.MethodGet, "/api/v1/admin/agencies/"+url.PathEscape(id)+"/export")
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	base := fmt.Sprintf("samdrift-%s-%s", id, time.Now().UTC().Format("20060102T150405Z"))
	archive := filepath.Join(dir, base+".tar.gz")
	f, err := os.OpenFile(archive, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", 0, err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return "", 0, err
	}
	if err := f.Close(); err != nil {
		return "", 0, err
	}
	dest := filepath.Join(dir, base)
	n, err := untar(archive, dest)
	if err != nil {
		return "", 0, fmt.Errorf("%s: %w", archive, err)
	}
	for _, must := range []string{"incidents.json", "tsdb"} {
		if _, err := os.Stat(filepath.Join(dest, must)); err != nil {
			return "", 0, fmt.Errorf("export lacks %s", must)
		}
	}
	return dest, n, nil
}

func untar(archive, dest string) (int, error) {
	f, err := os.Open(archive)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return 0, err
	}
	tr := tar.NewReader(gz)
	n := 0
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		p := filepath.Join(dest, filepath.FromSlash(h.Name))
		if !strings.HasPrefix(p, filepath.Clean(dest)+string(os.PathSeparator)) {
			return n, fmt.Errorf("unsafe path %q in archive", h.Name)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o750); err != nil {
				return n, err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
				return n, err
			}
			out, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return n, err
			}
			if _, err := io.Copy(out, tr); err != nil {
				out.Close()
				return n, err
			}
			if err := out.Close(); err != nil {
				return n, err
			}
			n++
		}
	}
}
