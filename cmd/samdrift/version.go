package main

import (
	"fmt"
	"log/slog"
	"runtime"

	"github.com/alecthomas/kingpin/v2"
)

func registerVersion(app *kingpin.Application, cmds map[string]func(*slog.Logger) int) {
	cmd := app.Command("version", "Print the version.")
	cmds[cmd.FullCommand()] = func(*slog.Logger) int {
		fmt.Printf("samdrift %s (%s, %s/%s)\n", getVersion(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return 0
	}
}
