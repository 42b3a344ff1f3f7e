// Command samdrift is the Samdrift monitoring and incident pipeline: one
// binary with a subcommand per job.
package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"

	"github.com/alecthomas/kingpin/v2"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

func main() {
	setGCPercent()
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// defaultGCPercent trades some CPU for a smaller heap: ingest keeps few
// long-lived objects besides the TSDB head, so collecting at 50 % growth
// instead of Go's 100 % cuts peak memory by about a quarter; at 35 % the
// collector took a fifth more CPU than at 50 % on the churn load, for 5 %
// less memory (docs/benchmarks.md). GOGC in the environment wins.
const defaultGCPercent = 50

func setGCPercent() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(defaultGCPercent)
	}
}

func getVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// run parses args and runs the chosen subcommand, returning the exit code:
// help (asked for) on stdout with 0; no command or a usage error, help or
// the error on stderr with 2.
func run(args []string, stdout, stderr io.Writer) (code int) {
	app := kingpin.New("samdrift", "Multi-agency monitoring and incident pipeline.")
	app.HelpFlag.Short('h')
	app.UsageWriter(stdout)
	app.ErrorWriter(stderr)
	// kingpin ends the process after --help; run returns the code instead.
	type exit int
	app.Terminate(func(c int) { panic(exit(c)) })
	defer func() {
		r := recover()
		if e, ok := r.(exit); ok {
			code = int(e)
		} else if r != nil {
			panic(r)
		}
	}()
	logLevel := app.Flag("log.level", "Log level: debug, info, warn, error.").Default("info").Enum("debug", "info", "warn", "error")
	logFormat := app.Flag("log.format", "Log format: logfmt or json.").Default("logfmt").Enum("logfmt", "json")

	cmds := map[string]func(*slog.Logger) int{}
	registerRun(app, cmds)
	registerAgency(app, cmds)
	registerReport(app, cmds)
	registerDemo(app, cmds)
	registerCheck(app, cmds)
	registerBench(app, cmds)
	registerDashboards(app, cmds)
	registerRemedySim(app, cmds)
	registerRules(app, cmds)
	registerComponents(app, cmds)
	registerToken(app, cmds)
	registerDeadLetter(app, cmds)
	registerSLA(app, cmds)
	registerSeries(app, cmds)
	registerVersion(app, cmds)

	if len(args) == 0 {
		app.Usage(nil)
		return 2
	}
	cmd, err := app.Parse(args)
	if err != nil {
		fmt.Fprintf(stderr, "samdrift: %v\n", err)
		return 2
	}
	return cmds[cmd](newLogger(*logLevel, *logFormat))
}

func newLogger(level, format string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: l}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}
