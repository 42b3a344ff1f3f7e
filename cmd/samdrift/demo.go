package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/alecthomas/kingpin/v2"

	"github.com/samdrift/samdrift/catalogue"
	"github.com/samdrift/samdrift/deploy"
	"github.com/samdrift/samdrift/internal/demo"
	"github.com/samdrift/samdrift/internal/node"
)

func registerDemo(app *kingpin.Application, cmds map[string]func(*slog.Logger) int) {
	cmd := app.Command("demo", "Run the demo: every component on the built-in demo catalogue (deploy/demo.yaml) with simulated agency services.")
	f := addNodeFlags(cmd, "samdrift-demo-data")
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
		if err := os.WriteFile(file, content, 0o640); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		cfg := f.config(file, logger)
		cat, err := catalogue.LoadFile(file)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		sim := demo.New(cat, nil)
		cfg.Mount = map[string]http.Handler{demo.PathPrefix: sim}
		cfg.Started = func(addr string) { printDemoBanner(addr, cat) }
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
