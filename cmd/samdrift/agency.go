package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/samdrift/samdrift/bus"
	"github.com/samdrift/samdrift/catalogue"
	"github.com/samdrift/samdrift/internal/apiclient"
	"github.com/samdrift/samdrift/internal/audit"
	"github.com/samdrift/samdrift/internal/onboard"
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
		started := time.Now()
		o := onboard.Options{File: *onFile, ID: *id, Name: *name, Phase: catalogue.Phase(*phase), Timezone: *tz,
			Remedy:   catalogue.Remedy{Company: *company, SupportCompany: *supportCompany, SupportOrganization: *supportOrg, AssignedGroup: *supportGroup},
			Services: *svcs, Probes: *probes, Tier: *tier, Availability: *avail, ServicesFile: *svcFile, NATSDir: *natsDir, NoNATS: *noNATS,
			Audit: onAudit.open(*onFile), Who: audit.Me(*onAudit.who)}
		fail := func(err error) int {
			fmt.Fprintln(os.Stderr, "samdrift agency onboard:", err)
			fmt.Fprintln(os.Stderr, "Nothing was changed.")
			return 1
		}
		// The company must exist in Remedy: an incident for an unknown
		// company is refused there, and found out only at the first outage.
		if cat, err := catalogue.LoadFile(o.File); err == nil && o.Remedy.Company != "" && cat.Ticketing.Backend == "remedy" && !*skipRemedy {
			if err := checkCompany(cat, o.Remedy.Company); err != nil {
				return fail(err)
			}
		}
		res, err := onboard.Onboard(o)
		if err != nil {
			return fail(err)
		}
		fmt.Printf("Onboarded agency %s (%s) in phase %s into %s.\n\n", o.ID, o.Name, o.Phase, o.File)
		fmt.Printf("Push credential %q (shown only now; the catalogue keeps its SHA-256):\n  token: %s\n", res.Credential, res.Token)
		if res.NATSFile != "" {
			fmt.Printf("\nNATS account %s for publishing to NATS directly (the file keeps a bcrypt hash):\n  user: %s\n  password: %s\n  file: %s (reload the NATS server to apply)\n",
				bus.AccountName(o.ID), res.NATSUser, res.NATSPassword, res.NATSFile)
		}
		ret := 0
		if g, pw := grafanaFromCatalogue(res.Catalogue, false); g != nil {
			fmt.Println()
			if err := provisionGrafana(res.Catalogue, *g, pw); err != nil {
				fmt.Fprintln(os.Stderr, "Grafana provisioning failed (the agency is onboarded; run samdrift dashboards provision to finish):", err)
				ret = 1
			}
		}
		if *waitURL != "" {
			if err := apiclient.New(*waitURL, res.Token).WaitAccepted(context.Background(), 30*time.Second); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			fmt.Printf("\n%s accepts the new credential; onboarding took %.1fs.\n", *waitURL, time.Since(started).Seconds())
		}
		return ret
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
		if !*yes {
			fmt.Fprintf(os.Stderr, "samdrift agency offboard: this stops %s's intake, exports its data to %s and then DELETES its metrics, incidents and catalogue entry.\nRun again with --yes to do it. Nothing was changed.\n", *offID, *exportDir)
			return 2
		}
		dest, err := onboard.Offboard(context.Background(), onboard.OffboardOptions{File: *offFile, ID: *offID, ExportDir: *exportDir,
			API: api.client(), NATSDir: *offNATS, Timeout: *wait, Audit: offAudit.open(*offFile), Who: audit.Me(*offAudit.who), Progress: os.Stdout})
		if err != nil {
			fmt.Fprintln(os.Stderr, "samdrift agency offboard:", err)
			return 1
		}
		if cat, err := catalogue.LoadFile(*offFile); err == nil {
			if g, pw := grafanaFromCatalogue(cat, true); g != nil {
				if err := provisionGrafana(cat, *g, pw); err != nil {
					fmt.Fprintln(os.Stderr, "Grafana: the agency's organisation is not yet deleted:", err)
					return 1
				}
			}
		}
		fmt.Printf("Agency %s offboarded; its data is in %s.\n", *offID, dest)
		return 0
	}
}

// checkCompany asks the catalogue's Remedy whether company exists.
func checkCompany(cat *catalogue.Catalogue, company string) error {
	r := cat.Ticketing.Remedy
	pw, err := catalogue.ReadSecret(catalogue.RemedyPasswordEnv, r.PasswordFile, "remedy password")
	if err != nil {
		return fmt.Errorf("%w (or --skip-remedy-check)", err)
	}
	c := remedy.New(remedy.Config{URL: r.URL, Username: r.Username, Password: pw, Timeout: 15 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ok, err := c.CompanyExists(ctx, company)
	if err != nil {
		return fmt.Errorf("cannot check company %q in Remedy: %w (or --skip-remedy-check)", company, err)
	}
	if !ok {
		return fmt.Errorf("the Remedy at %s has no company %q: have it created there first, or correct --company", r.URL, company)
	}
	return nil
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

// client is the API client of the flags (with timeouts on every request).
func (f apiFlags) client() *apiclient.Client { return apiclient.New(*f.url, *f.token) }
