package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/alecthomas/kingpin/v2"

	"github.com/samdrift/samdrift/catalogue"
)

func registerCheck(app *kingpin.Application, cmds map[string]func(*slog.Logger) int) {
	check := app.Command("check", "Check configuration.")
	cmd := check.Command("config", "Validate an agency catalogue: exit 0 if valid, else print file:line: reason for every problem.")
	file := cmd.Arg("file", "Catalogue file.").Required().String()
	cmds[cmd.FullCommand()] = func(*slog.Logger) int {
		c, err := catalogue.LoadFile(*file)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		services := 0
		for _, a := range c.Agencies {
			services += len(a.Services)
		}
		fmt.Printf("%s: valid (%d agencies, %d services)\n", *file, len(c.Agencies), services)
		return 0
	}
}
