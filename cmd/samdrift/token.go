package main

import (
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/samdrift/samdrift/catalogue"
	"github.com/samdrift/samdrift/internal/audit"
	"github.com/samdrift/samdrift/internal/onboard"
)

func registerToken(app *kingpin.Application, cmds map[string]func(*slog.Logger) int) {
	tok := app.Command("token", "Credentials.")
	cmd := tok.Command("new", "Print a new random token and the catalogue lines that bind it (only its SHA-256 is stored).")
	agency := cmd.Flag("agency", "Agency the credential belongs to.").String()
	role := cmd.Flag("role", "Provider role instead of an agency: ops or admin.").Enum("ops", "admin")
	name := cmd.Flag("name", "Credential name (default: <agency or role>-<date>).").String()
	cfg := cmd.Flag("config", "The catalogue the credential is for: the audit log beside it records that it was made.").String()
	aud := addAuditFlags(cmd)
	cmds[cmd.FullCommand()] = func(*slog.Logger) int {
		if (*agency == "") == (*role == "") {
			fmt.Fprintln(os.Stderr, "samdrift token new: give exactly one of --agency ID or --role ops|admin")
			return 2
		}
		owner := *agency + *role
		if *name == "" {
			*name = fmt.Sprintf("%s-%s", owner, time.Now().UTC().Format("20060102-150405"))
		}
		t, err := onboard.NewToken()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		where := fmt.Sprintf("agencies (id: %s) → credentials", *agency)
		if *role != "" {
			where = fmt.Sprintf("roles → %s → credentials", *role)
		}
		if *cfg != "" || *aud.log != "" {
			// The audit trail records that a credential was made, by whom
			// and for whom; never the token.
			if err := aud.open(*cfg).Write(audit.Entry{Who: audit.Me(*aud.who), Action: "credential_created", Agency: *agency,
				Detail: map[string]any{"credential": *name, "role": map[bool]string{true: *role, false: "agency"}[*role != ""]}}); err != nil {
				fmt.Fprintln(os.Stderr, "samdrift token new: audit log:", err)
				return 1
			}
		}
		fmt.Printf("token: %s\n\n# The token is shown only now; give it to the sender and keep it secret.\n# Add to the catalogue under %s:\n      - name: %s\n        token_sha256: %s\n",
			t, where, *name, catalogue.HashToken(t))
		return 0
	}
}
