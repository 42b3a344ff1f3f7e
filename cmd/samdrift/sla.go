package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"text/tabwriter"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/samdrift/samdrift/rules"
)

// registerSLA adds "samdrift sla restate|restatements|withdraw": SLA
// restatements through the admin API (docs/sla.md).
func registerSLA(app *kingpin.Application, cmds map[string]func(*slog.Logger) int) {
	sla := app.Command("sla", "SLA restatements: correct a month's figures after the fact, with a reason, on record.")

	rs := sla.Command("restate", "Restate a service's SLA over a window: excluded (counts neither good nor bad), counted_good or counted_bad.")
	rsAPI := addAPIFlags(rs)
	agency := rs.Flag("agency", "Agency id.").Required().String()
	service := rs.Flag("service", "Service id.").Required().String()
	from := rs.Flag("from", "Start of the window, RFC 3339 (2026-11-03T10:00:00+01:00).").Required().String()
	to := rs.Flag("to", "End of the window, RFC 3339.").Required().String()
	kind := rs.Flag("kind", "excluded, counted_good or counted_bad.").Required().Enum(rules.RestateExcluded, rules.RestateCountedGood, rules.RestateCountedBad)
	reason := rs.Flag("reason", "Why (shown to the agency in its portal and report).").Required().String()
	cmds[rs.FullCommand()] = func(*slog.Logger) int {
		f, err1 := time.Parse(time.RFC3339, *from)
		t, err2 := time.Parse(time.RFC3339, *to)
		if err1 != nil || err2 != nil {
			fmt.Fprintln(os.Stderr, "samdrift sla restate: --from and --to are RFC 3339 times, such as 2026-11-03T10:00:00+01:00")
			return 2
		}
		body, _ := json.Marshal(map[string]any{"agency": *agency, "service": *service, "from": f, "to": t, "kind": *kind, "reason": *reason})
		var r rules.Restatement
		if err := rsAPI.client().JSON(context.Background(), http.MethodPost, "/api/v1/admin/sla/restatements", bytes.NewReader(body), &r); err != nil {
			fmt.Fprintln(os.Stderr, "samdrift sla restate:", err)
			return 1
		}
		fmt.Printf("Restatement %s: %s/%s %s – %s %s (%s).\n", r.ID, r.Agency, r.Service, r.From.Format(time.RFC3339), r.To.Format(time.RFC3339), r.Kind, r.Reason)
		return 0
	}

	ls := sla.Command("restatements", "List an agency's restatements, in force and withdrawn.")
	lsAPI := addAPIFlags(ls)
	lsAgency := ls.Flag("agency", "Agency id.").Required().String()
	lsMonth := ls.Flag("month", "Only those touching this month (YYYY-MM).").String()
	cmds[ls.FullCommand()] = func(*slog.Logger) int {
		q := url.Values{"agency": {*lsAgency}}
		if *lsMonth != "" {
			q.Set("month", *lsMonth)
		}
		var out []rules.Restatement
		if err := lsAPI.client().Get(context.Background(), "/api/v1/admin/sla/restatements?"+q.Encode(), &out); err != nil {
			fmt.Fprintln(os.Stderr, "samdrift sla restatements:", err)
			return 1
		}
		printRestatements(os.Stdout, out)
		return 0
	}

	wd := sla.Command("withdraw", "Withdraw a restatement (it stays on record, marked withdrawn).")
	wdAPI := addAPIFlags(wd)
	wdAgency := wd.Flag("agency", "Agency id.").Required().String()
	wdReason := wd.Flag("reason", "Why it is withdrawn.").Required().String()
	wdID := wd.Arg("id", "Restatement id, from samdrift sla restatements.").Required().String()
	cmds[wd.FullCommand()] = func(*slog.Logger) int {
		var r rules.Restatement
		path := fmt.Sprintf("/api/v1/admin/sla/restatements/%s/%s?%s", url.PathEscape(*wdAgency), url.PathEscape(*wdID), url.Values{"reason": {*wdReason}}.Encode())
		if err := wdAPI.client().JSON(context.Background(), http.MethodDelete, path, nil, &r); err != nil {
			fmt.Fprintln(os.Stderr, "samdrift sla withdraw:", err)
			return 1
		}
		fmt.Printf("Restatement %s of %s/%s withdrawn.\n", r.ID, r.Agency, r.Service)
		return 0
	}
}

func printRestatements(w io.Writer, rs []rules.Restatement) {
	if len(rs) == 0 {
		fmt.Fprintln(w, "No restatements.")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSERVICE\tFROM\tTO\tKIND\tSTATUS\tBY\tREASON")
	for _, r := range rs {
		status := "in force"
		if !r.Active() {
			status = "withdrawn (" + r.WithdrawnReason + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Service, r.From.Format(time.RFC3339), r.To.Format(time.RFC3339), r.Kind, status, r.By, r.Reason)
	}
	_ = tw.Flush()
}

// registerSeries adds "samdrift series delete": delete an agency's series
// (personal data sent by mistake), a dry run unless --yes.
func registerSeries(app *kingpin.Application, cmds map[string]func(*slog.Logger) int) {
	series := app.Command("series", "An agency's series.")
	del := series.Command("delete", "Delete an agency's series matching a selector in a time range (a dry run that counts them, unless --yes).")
	api := addAPIFlags(del)
	agency := del.Flag("agency", "Agency id.").Required().String()
	selector := del.Flag("selector", `Series selector, such as '{__name__="login_total", user=~".+"}'.`).Required().String()
	from := del.Flag("from", "Start, RFC 3339.").Required().String()
	to := del.Flag("to", "End, RFC 3339 (default: now).").String()
	yes := del.Flag("yes", "Delete; without it only count.").Bool()
	cmds[del.FullCommand()] = func(*slog.Logger) int {
		f, err := time.Parse(time.RFC3339, *from)
		if err != nil {
			fmt.Fprintln(os.Stderr, "samdrift series delete: --from is an RFC 3339 time")
			return 2
		}
		t := time.Now()
		if *to != "" {
			if t, err = time.Parse(time.RFC3339, *to); err != nil {
				fmt.Fprintln(os.Stderr, "samdrift series delete: --to is an RFC 3339 time")
				return 2
			}
		}
		body, _ := json.Marshal(map[string]any{"agency": *agency, "selector": *selector, "start": f, "end": t, "dry_run": !*yes})
		var out struct {
			Series  int  `json:"series"`
			Deleted bool `json:"deleted"`
		}
		if err := api.client().JSON(context.Background(), http.MethodPost, "/api/v1/admin/series/delete", bytes.NewReader(body), &out); err != nil {
			fmt.Fprintln(os.Stderr, "samdrift series delete:", err)
			return 1
		}
		if *yes {
			fmt.Printf("Deleted %d series of %s matching %s.\n", out.Series, *agency, *selector)
		} else {
			fmt.Printf("%d series of %s match %s (dry run: add --yes to delete them).\n", out.Series, *agency, *selector)
		}
		return 0
	}
}
