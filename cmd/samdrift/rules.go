package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/alecthomas/kingpin/v2"

	"github.com/samdrift/samdrift/catalogue"
	"github.com/samdrift/samdrift/rules"
)

func registerRules(app *kingpin.Application, cmds map[string]func(*slog.Logger) int) {
	r := app.Command("rules", "Rules.")
	cmd := r.Command("export", "Write the SLA rules generated from the catalogue, one Prometheus rule file per agency (DIR/<agency>.yml); promtool check rules accepts them.")
	file := cmd.Flag("config", "Agency catalogue file.").Required().String()
	url := cmd.Flag("web.external-url", "URL under which users reach Samdrift (runbook and dashboard links).").Default("http://127.0.0.1:9470").String()
	dir := cmd.Arg("dir", "Output directory.").Required().String()
	cmds[cmd.FullCommand()] = func(*slog.Logger) int {
		c, err := catalogue.LoadFile(*file)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		paths, err := rules.Export(c, *dir, *url)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		for _, p := range paths {
			fmt.Println(p)
		}
		return 0
	}
}
