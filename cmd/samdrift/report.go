package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/samdrift/samdrift/dashboards/report"
	"github.com/samdrift/samdrift/internal/metering"
)

func registerReport(app *kingpin.Application, cmds map[string]func(*slog.Logger) int) {
	rep := app.Command("report", "Monthly reports from a running Samdrift.")

	us := rep.Command("usage", "Each agency's usage of a month and its cost share; plan- and build-phase usage is listed apart (the onboarding project pays it).")
	usAPI := addAPIFlags(us)
	usMonth := us.Flag("month", "Calendar month, YYYY-MM (default: this month).").String()
	csvFile := us.Flag("csv", "Also write the table as CSV to this file.").String()
	cmds[us.FullCommand()] = func(*slog.Logger) int {
		month := first(*usMonth, time.Now().Format("2006-01"))
		if _, err := time.Parse("2006-01", month); err != nil {
			fmt.Fprintf(os.Stderr, "samdrift report usage: --month %q: want YYYY-MM\n", month)
			return 2
		}
		var rows []struct {
			metering.Record
			FundedBy string  `json:"funded_by"`
			Share    float64 `json:"share"`
		}
		if err := usAPI.client().Get(context.Background(), "/api/v1/admin/usage?month="+url.QueryEscape(month), &rows); err != nil {
			fmt.Fprintln(os.Stderr, "samdrift report usage:", err)
			return 1
		}
		recs := make([]metering.Record, len(rows))
		for i, r := range rows {
			recs[i] = r.Record
		}
		if len(recs) == 0 {
			fmt.Printf("No usage recorded for %s.\n", month)
		} else {
			printUsage(os.Stdout, month, recs)
		}
		if *csvFile != "" {
			if err := os.WriteFile(*csvFile, []byte(metering.CSV(recs)), 0o644); err != nil {
				fmt.Fprintln(os.Stderr, "samdrift report usage:", err)
				return 1
			}
			fmt.Printf("\nWrote %s\n", *csvFile)
		}
		return 0
	}

	sla := rep.Command("sla", "An agency's monthly SLA report as HTML, and PDF through headless Chromium when available.")
	slaAPI := addAPIFlags(sla)
	agency := sla.Flag("agency", "Agency id.").Required().String()
	slaMonth := sla.Flag("month", "Calendar month, YYYY-MM (default: this month).").String()
	out := sla.Flag("out", "Output directory.").Default(".").String()
	pdf := sla.Flag("pdf", "PDF output: auto (when Chromium is installed), always or never.").Default("auto").Enum("auto", "always", "never")
	cmds[sla.FullCommand()] = func(*slog.Logger) int {
		month := first(*slaMonth, time.Now().Format("2006-01"))
		var r report.SLA
		q := url.Values{"agency": {*agency}, "month": {month}}
		if err := slaAPI.client().Get(context.Background(), "/api/v1/reports/sla?"+q.Encode(), &r); err != nil {
			fmt.Fprintln(os.Stderr, "samdrift report sla:", err)
			return 1
		}
		html, err := report.HTML(&r)
		if err != nil {
			fmt.Fprintln(os.Stderr, "samdrift report sla:", err)
			return 1
		}
		if err := os.MkdirAll(*out, 0o750); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		base := filepath.Join(*out, fmt.Sprintf("sla-%s-%s", r.Agency, r.Month))
		if err := os.WriteFile(base+".html", html, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Println("Wrote", base+".html")
		if r.NoData {
			fmt.Printf("Note: no availability data for %s in %s; the report says so.\n", r.Agency, r.Month)
		}
		chromium := report.Chromium()
		switch {
		case *pdf == "never":
		case chromium == "" && *pdf == "always":
			fmt.Fprintln(os.Stderr, "samdrift report sla: --pdf always, but no chromium on PATH")
			return 1
		case chromium == "":
			fmt.Println("No chromium on PATH: HTML only.")
		default:
			b, err := report.PDF(context.Background(), chromium, html)
			if err != nil {
				fmt.Fprintln(os.Stderr, "samdrift report sla:", err)
				return 1
			}
			if err := os.WriteFile(base+".pdf", b, 0o644); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			fmt.Println("Wrote", base+".pdf")
		}
		return 0
	}
}

func printUsage(w io.Writer, month string, recs []metering.Record) {
	shares := metering.Shares(recs)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "AGENCY\tPHASE\tSAMPLES\tSERIES (PEAK)\tSTORED (PEAK)\tTARGETS\tRULE EVALS\tALERTS\tINCIDENTS\tQUERIES\tSHARE\tFUNDED BY\t\n")
	for i, r := range recs {
		v := r.Values
		share := fmt.Sprintf("%.2f %%", shares[i]*100)
		if r.Phase != "run" {
			share = "—"
		}
		fmt.Fprintf(tw, "%s\t%s\t%.0f\t%.0f\t%s\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%s\t%s\t\n", r.Agency, r.Phase,
			v[metering.Samples], v[metering.Series], bytesHuman(v[metering.StoredBytes]), v[metering.Targets],
			v[metering.RuleEvals], v[metering.Alerts], v[metering.Incidents], v[metering.Queries], share, metering.Funded(r.Phase))
	}
	fmt.Fprintf(w, "Usage in %s\n\n", month)
	tw.Flush()
}

func bytesHuman(b float64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%.0f B", b)
	}
	div, exp := float64(unit), 0
	for n := b / unit; n >= unit; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", b/div, "KMGTPE"[exp])
}
