package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/alecthomas/kingpin/v2"

	"github.com/samdrift/samdrift/catalogue"
	"github.com/samdrift/samdrift/dashboards"
	"github.com/samdrift/samdrift/dashboards/grafana"
)

// grafanaPasswordEnv, when set, holds the Grafana admin password.
const grafanaPasswordEnv = "SAMDRIFT_GRAFANA_PASSWORD"

func registerDashboards(app *kingpin.Application, cmds map[string]func(*slog.Logger) int) {
	d := app.Command("dashboards", "Grafana dashboards.")

	prov := d.Command("provision", "Provision Grafana: an organisation per agency with its own data source and SLA dashboard, and a NOC organisation. Idempotent.")
	file := prov.Flag("config", "Agency catalogue file.").Required().String()
	url := prov.Flag("grafana.url", "Grafana URL (default: the catalogue's grafana.url).").String()
	user := prov.Flag("grafana.user", "Grafana admin user (default: grafana.username, else admin).").String()
	pwFile := prov.Flag("grafana.password-file", "File with the admin password (default: grafana.password_file; or set "+grafanaPasswordEnv+").").String()
	dsURL := prov.Flag("datasource-url", "How Grafana reaches Samdrift's query API (default: grafana.datasource_url).").String()
	prune := prov.Flag("prune", "Delete the organisations of agencies no longer in the catalogue.").Bool()
	cmds[prov.FullCommand()] = func(*slog.Logger) int {
		c, err := catalogue.LoadFile(*file)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		o := grafana.Options{
			URL: first(*url, c.Grafana.URL), Username: first(*user, c.Grafana.Username, "admin"),
			DatasourceURL: first(*dsURL, c.Grafana.DatasourceURL), OrgPrefix: c.Grafana.OrgPrefix, Prune: *prune, Progress: os.Stdout,
		}
		if o.URL == "" || o.DatasourceURL == "" {
			fmt.Fprintln(os.Stderr, "samdrift dashboards provision: need a Grafana URL and a data source URL (grafana.url and grafana.datasource_url in the catalogue, or flags)")
			return 2
		}
		if err := provisionGrafana(c, o, first(*pwFile, c.Grafana.PasswordFile)); err != nil {
			fmt.Fprintln(os.Stderr, "samdrift dashboards provision:", err)
			return 1
		}
		fmt.Printf("Samdrift accepts the data sources' credentials once it has read %s (restart or SIGHUP if it ran before).\n", c.GrafanaKeyFile())
		return 0
	}

	exp := d.Command("export", "Write Grafana file provisioning (data source, dashboard provider, dashboard JSON) to DIR.")
	efile := exp.Flag("config", "Agency catalogue file.").Required().String()
	edsURL := exp.Flag("datasource-url", "How Grafana reaches Samdrift's query API (default: grafana.datasource_url).").String()
	dir := exp.Arg("dir", "Output directory.").Required().String()
	cmds[exp.FullCommand()] = func(*slog.Logger) int {
		c, err := catalogue.LoadFile(*efile)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		ds := first(*edsURL, c.Grafana.DatasourceURL, "http://127.0.0.1:9470/prometheus")
		key, err := c.EnsureGrafanaKey()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		res, err := dashboards.Export(c, *dir, ds, key)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		for _, f := range res.Files {
			fmt.Println(f)
		}
		fmt.Printf("\nStart Grafana with GF_PATHS_PROVISIONING=%s/provisioning and, in its environment (keep it secret):\n  %s\n", strings.TrimSuffix(*dir, "/"), res.Env)
		return 0
	}
}

func first(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// provisionGrafana provisions every organisation of the catalogue, printing
// progress; passwordFile is read unless SAMDRIFT_GRAFANA_PASSWORD is set.
func provisionGrafana(c *catalogue.Catalogue, o grafana.Options, passwordFile string) error {
	var err error
	if o.Password, err = catalogue.ReadSecret(grafanaPasswordEnv, passwordFile, "grafana admin password"); err != nil {
		return err
	}
	if o.Key, err = c.EnsureGrafanaKey(); err != nil {
		return err
	}
	p, err := grafana.New(o)
	if err != nil {
		return err
	}
	fmt.Fprintf(o.Progress, "Provisioning %s (data source %s)\n", o.URL, o.DatasourceURL)
	sum, err := p.Run(context.Background(), c)
	if err != nil {
		return err
	}
	changed := 0
	for _, r := range sum.Results {
		if r.Changed() {
			changed++
		}
	}
	failed := sum.Failed()
	fmt.Fprintf(o.Progress, "%d organisations: %d changed, %d unchanged, %d failed; %d no longer in the catalogue\n",
		len(sum.Results), changed, len(sum.Results)-changed-len(failed), len(failed), len(sum.Removed))
	if len(failed) > 0 {
		var names []string
		for _, r := range failed {
			names = append(names, first(r.Agency, "NOC"))
		}
		return fmt.Errorf("failed: %s (run samdrift dashboards provision again to finish them)", strings.Join(names, ", "))
	}
	return nil
}

// grafanaFromCatalogue is the provisioning of the catalogue's grafana
// block, or nil when it names no Grafana.
func grafanaFromCatalogue(c *catalogue.Catalogue, prune bool) (*grafana.Options, string) {
	if c.Grafana.URL == "" || c.Grafana.DatasourceURL == "" {
		return nil, ""
	}
	return &grafana.Options{URL: c.Grafana.URL, Username: first(c.Grafana.Username, "admin"), DatasourceURL: c.Grafana.DatasourceURL,
		OrgPrefix: c.Grafana.OrgPrefix, Prune: prune, Progress: os.Stdout}, c.Grafana.PasswordFile
}
