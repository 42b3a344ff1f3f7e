package main

import (
	"bytes"
	"context"
	"fmt"
	"hash/crc32"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/samdrift/samdrift/catalogue"
	"github.com/samdrift/samdrift/deploy"
	"github.com/samdrift/samdrift/internal/demo"
	"github.com/samdrift/samdrift/internal/node"
	"github.com/samdrift/samdrift/ticketing/builtin"
	"github.com/samdrift/samdrift/ticketing/remedy/remedysim"
)

func registerDemo(app *kingpin.Application, cmds map[string]func(*slog.Logger) int) {
	cmd := app.Command("demo", "Run the demo: every component on the built-in demo catalogue (deploy/demo.yaml) with simulated agency services.")
	f := addNodeFlags(cmd, "samdrift-demo-data")
	withRemedy := cmd.Flag("remedy-sim", "Deliver incidents to a built-in Remedy AR REST simulator (one company per agency) instead of the built-in store alone.").Bool()
	cmds[cmd.FullCommand()] = func(logger *slog.Logger) int {
		if strings.HasSuffix(*f.httpAddr, ":0") {
			fmt.Fprintln(os.Stderr, "samdrift demo: --http.addr needs a fixed port: the demo catalogue's targets point at it")
			return 2
		}
		if err := os.MkdirAll(*f.dataDir, 0o750); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		// The demo catalogue is rewritten on every start, its targets
		// pointing at this run's address.
		file := filepath.Join(*f.dataDir, "demo.yaml")
		content := bytes.ReplaceAll(deploy.DemoCatalogue, []byte(deploy.DemoAddr), []byte(*f.httpAddr))
		var remedyInfo string
		if *withRemedy {
			var err error
			content, remedyInfo, err = startDemoRemedy(content, *f.dataDir, logger)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		}
		// Agencies onboarded into the demo (samdrift agency onboard) stay.
		var kept [][]byte
		if old, err := catalogue.LoadFile(file); err == nil {
			if fresh, err := catalogue.Parse(content, file); err == nil {
				for _, a := range old.Agencies {
					if fresh.Agency(a.ID) == nil {
						if b, err := catalogue.AgencyYAML(file, a.ID); err == nil {
							kept = append(kept, b)
						}
					}
				}
			}
		}
		if err := os.WriteFile(file, content, 0o640); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		for _, b := range kept {
			if _, err := catalogue.AddAgency(file, b); err != nil {
				logger.Warn("dropping an onboarded agency from the demo catalogue", "err", err)
			}
		}
		cfg := f.config(file, logger)
		cat, err := catalogue.LoadFile(file)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		// A month and a half of history, so that the wall, the portals and
		// last month's report have figures at once (only into agencies
		// whose data directory is still empty).
		t0 := time.Now()
		st, err := demo.Backfill(context.Background(), cat, demo.NewHistory(cat, t0), filepath.Join(*f.dataDir, "tsdb"), logger)
		if err != nil {
			fmt.Fprintln(os.Stderr, "samdrift demo: backfilling the demo's history:", err)
			return 1
		}
		if st.Agencies > 0 {
			fmt.Printf("backfilled the demo's history since %s for %d agencies (%d series, %d samples) in %s\n",
				demo.NewHistory(cat, t0).From.Format("2006-01-02"), st.Agencies, st.Series, st.Samples, time.Since(t0).Round(10*time.Millisecond))
		}
		// A few past incidents of the history's outages, with their tickets.
		hist := demo.NewHistory(cat, t0)
		cfg.SeedIncidents = func(ctx context.Context, incidents *builtin.Store) error {
			for _, inc := range demo.PastIncidents(cat, hist, 3) {
				if _, err := incidents.Deliver(ctx, inc); err != nil {
					return err
				}
				if err := incidents.SetTicket(ctx, inc.Agency, inc.ID, fmt.Sprintf("INC%012d", crc32.ChecksumIEEE([]byte(inc.ID)))); err != nil {
					return err
				}
			}
			return nil
		}
		sim := demo.New(cat, nil)
		cfg.Mount = map[string]http.Handler{demo.PathPrefix: sim}
		cfg.Started = func(addr string) {
			printDemoBanner(addr, cat)
			if remedyInfo != "" {
				fmt.Print(remedyInfo)
			}
		}
		n, err := node.New(cfg)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if err := n.Run(context.Background()); err != nil {
			logger.Error("samdrift demo failed", "err", err)
			return 1
		}
		return 0
	}
}

func printDemoBanner(addr string, cat *catalogue.Catalogue) {
	var b strings.Builder
	fmt.Fprintf(&b, "\nSamdrift demo is running: http://%s/\n\n", addr)
	fmt.Fprintf(&b, "Demo tokens (Authorization: Bearer <token>):\n")
	names := make([]string, 0, len(demo.Tokens))
	for n := range demo.Tokens {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		id, ok := cat.Authenticate(demo.Tokens[n])
		if !ok {
			continue
		}
		who := string(id.Role)
		if id.Agency != "" {
			who = "agency " + id.Agency
		}
		fmt.Fprintf(&b, "  %-24s %s\n", demo.Tokens[n], who)
	}
	fmt.Fprintf(&b, "\nTry (data appears within a minute):\n")
	fmt.Fprintf(&b, "  curl -s -H 'Authorization: Bearer ops-demo-token' 'http://%s/prometheus/api/v1/query?query=up'\n", addr)
	fmt.Fprintf(&b, "  curl -s -H 'Authorization: Bearer digg-demo-token' 'http://%s/prometheus/api/v1/query?query=up'\n\n", addr)
	fmt.Fprint(os.Stdout, b.String())
}

// demoRemedyPassword is the demo simulator's password for every user.
const demoRemedyPassword = "demo-remedy-password"

// startDemoRemedy starts a Remedy simulator on a free loopback port, knowing
// the demo agencies' companies, and points the demo catalogue at it.
func startDemoRemedy(content []byte, dataDir string, logger *slog.Logger) ([]byte, string, error) {
	cat, err := catalogue.Parse(content, "demo.yaml")
	if err != nil {
		return nil, "", err
	}
	companies := remedysim.Companies(cat)
	users := remedysim.UsersFor(companies, "samdrift-integration", demoRemedyPassword)
	sim := remedysim.New(remedysim.Options{Users: users, Companies: companies})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	go func() {
		srv := &http.Server{Handler: sim, ReadHeaderTimeout: 10 * time.Second}
		if err := srv.Serve(ln); err != nil {
			logger.Error("remedy simulator stopped", "err", err)
		}
	}()
	pwFile := filepath.Join(dataDir, "remedy-password")
	if err := os.WriteFile(pwFile, []byte(demoRemedyPassword+"\n"), 0o600); err != nil {
		return nil, "", err
	}
	url := "http://" + ln.Addr().String()
	block := fmt.Sprintf("ticketing:\n  backend: remedy\n  remedy:\n    url: %s\n    username: samdrift-integration\n    password_file: %s\n    first_name: Samdrift\n    last_name: Integration\n", url, pwFile)
	out := bytes.Replace(content, []byte("ticketing:\n  backend: builtin\n"), []byte(block), 1)
	if bytes.Equal(out, content) {
		return nil, "", fmt.Errorf("demo catalogue has no builtin ticketing block to replace")
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Remedy simulator: %s/api/arsys/v1/entry/HPD:IncidentInterface (password %q)\n", url, demoRemedyPassword)
	for _, u := range users[1:] {
		fmt.Fprintf(&b, "  %-28s sees %s\n", u.Name, strings.Join(u.Companies, ", "))
	}
	b.WriteString("\n")
	return out, b.String(), nil
}
