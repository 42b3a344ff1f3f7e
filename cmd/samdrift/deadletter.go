package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/alecthomas/kingpin/v2"
)

// deadLetter is one entry of GET /api/v1/admin/deadletters.
type deadLetter struct {
	Seq        uint64    `json:"seq"`
	Agency     string    `json:"agency"`
	Stage      string    `json:"stage"`
	Reason     string    `json:"reason"`
	Subject    string    `json:"subject"`
	Time       time.Time `json:"time"`
	Bytes      int       `json:"bytes"`
	Deliveries int       `json:"deliveries"`
}

// registerDeadLetter adds "samdrift deadletter list|replay|discard": the
// admin's view of the messages a stage gave up on (docs/reliability.md).
func registerDeadLetter(app *kingpin.Application, cmds map[string]func(*slog.Logger) int) {
	dl := app.Command("deadletter", "Messages a pipeline stage gave up on: list them, replay or discard one.")

	ls := dl.Command("list", "List dead letters, oldest first.")
	lsAPI := addAPIFlags(ls)
	lsAgency := ls.Flag("agency", "Only this agency's.").String()
	lsLimit := ls.Flag("limit", "At most this many.").Default("1000").Int()
	cmds[ls.FullCommand()] = func(*slog.Logger) int {
		q := url.Values{"limit": {strconv.Itoa(*lsLimit)}}
		if *lsAgency != "" {
			q.Set("agency", *lsAgency)
		}
		var dls []deadLetter
		if err := lsAPI.client().Get(context.Background(), "/api/v1/admin/deadletters?"+q.Encode(), &dls); err != nil {
			fmt.Fprintln(os.Stderr, "samdrift deadletter list:", err)
			return 1
		}
		printDeadLetters(os.Stdout, dls)
		return 0
	}

	for _, a := range []struct {
		name, help, method, path, done string
	}{
		{"replay", "Put a dead letter back where it came from; the stage tries it again.", http.MethodPost, "/api/v1/admin/deadletters/%d/replay", "replayed"},
		{"discard", "Delete a dead letter for good.", http.MethodDelete, "/api/v1/admin/deadletters/%d", "discarded"},
	} {
		cmd := dl.Command(a.name, a.help)
		api := addAPIFlags(cmd)
		seq := cmd.Arg("seq", "Sequence number, from samdrift deadletter list.").Required().Uint64()
		cmds[cmd.FullCommand()] = func(*slog.Logger) int {
			var d deadLetter
			if err := api.client().JSON(context.Background(), a.method, fmt.Sprintf(a.path, *seq), nil, &d); err != nil {
				fmt.Fprintf(os.Stderr, "samdrift deadletter %s: %v\n", a.name, err)
				return 1
			}
			fmt.Printf("Dead letter %d (%s, %s: %s) %s to %s.\n", d.Seq, d.Agency, d.Stage, d.Reason, a.done, d.Subject)
			return 0
		}
	}
}

func printDeadLetters(w io.Writer, dls []deadLetter) {
	if len(dls) == 0 {
		fmt.Fprintln(w, "No dead letters.")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tAGENCY\tSTAGE\tTIME\tBYTES\tTRIES\tREASON")
	for _, d := range dls {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%d\t%s\n", d.Seq, d.Agency, d.Stage, d.Time.UTC().Format(time.RFC3339), d.Bytes, d.Deliveries, d.Reason)
	}
	_ = tw.Flush()
}
