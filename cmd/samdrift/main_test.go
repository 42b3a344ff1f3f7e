package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/samdrift/samdrift/catalogue"
)

// captured runs the command line with args and returns its exit code and
// what it printed on stdout and stderr (the commands print to the
// process's own streams).
func captured(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	outR, outW, err := os.Pipe()
	require.NoError(t, err)
	errR, errW, err := os.Pipe()
	require.NoError(t, err)
	oldOut, oldErr := os.Stdout, os.Stderr
	os.Stdout, os.Stderr = outW, errW
	var out, errb bytes.Buffer
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(&out, outR); done <- struct{}{} }()
	go func() { _, _ = io.Copy(&errb, errR); done <- struct{}{} }()
	code := run(args, os.Stdout, os.Stderr)
	os.Stdout, os.Stderr = oldOut, oldErr
	outW.Close()
	errW.Close()
	<-done
	<-done
	return code, out.String(), errb.String()
}

func TestCommandLine(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("provider: {name: P}\nagencies:\n  - id: a\n    name: A\n    phase: operate\n"), 0o600))
	for _, tc := range []struct {
		name           string
		args           []string
		code           int
		stdout, stderr string
	}{
		{"no command prints help and exits 2", nil, 2, "usage: samdrift", ""},
		{"--help is help, not an error", []string{"--help"}, 0, "usage: samdrift", ""},
		{"help of a command", []string{"help", "agency", "onboard"}, 0, "--services", ""},
		{"unknown command", []string{"bogus"}, 2, "", `expected command but got "bogus"`},
		{"missing subcommand", []string{"agency"}, 2, "", "must select a subcommand"},
		{"version", []string{"version"}, 0, "samdrift ", ""},
		{"valid catalogue", []string{"check", "config", "../../deploy/demo.yaml"}, 0, "valid (7 agencies", ""},
		{"invalid catalogue names file and line", []string{"check", "config", bad}, 1, "", bad + `:5: agency "a": phase "operate" must be one of plan, build, run`},
		{"missing file", []string{"check", "config", filepath.Join(dir, "none.yaml")}, 1, "", "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := captured(t, tc.args...)
			require.Equal(t, tc.code, code, "stdout:\n%s\nstderr:\n%s", out, errs)
			require.Contains(t, out, tc.stdout)
			require.Contains(t, errs, tc.stderr)
		})
	}
}

// TestOnboardAndPhase: onboarding writes a valid catalogue entry with a
// working credential and prints the token once; moving the phase is
// audited; a second onboarding of the id changes nothing.
func TestOnboardAndPhase(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "catalogue.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte("provider: {name: P}\nagencies:\n  - {id: alpha, name: A, phase: run}\n"), 0o600))
	svcs := filepath.Join(dir, "services.yaml")
	require.NoError(t, os.WriteFile(svcs, []byte("services:\n  - id: web   # the public site\n    name: Webb\n    tier: high\n    sla: {availability: 99.9}\n"), 0o600))
	code, out, errs := captured(t, "agency", "onboard", "--config", cfg, "--id", "jo", "--name", "JO", "--company", "JO",
		"--services", svcs, "--no-nats-account", "--audit-log", filepath.Join(dir, "audit.log"))
	require.Equal(t, 0, code, errs)
	tok := strings.TrimSpace(strings.SplitN(strings.SplitN(out, "token: ", 2)[1], "\n", 2)[0])
	cat, err := catalogue.LoadFile(cfg)
	require.NoError(t, err)
	id, ok := cat.Authenticate(tok)
	require.True(t, ok, "the printed token authenticates as the new agency")
	require.Equal(t, "jo", id.Agency)
	jo := cat.Agency("jo")
	require.Equal(t, catalogue.PhaseBuild, jo.Phase)
	require.Equal(t, "JO", jo.Remedy.Company)
	require.Equal(t, "Webb", jo.Service("web").Name)
	b, err := os.ReadFile(cfg)
	require.NoError(t, err)
	require.Contains(t, string(b), "# the public site", "the services file's comments are kept")
	require.NotContains(t, string(b), "cert_subject", "no empty keys")
	require.NotContains(t, string(b), tok, "only the token's hash is kept")

	code, _, errs = captured(t, "agency", "onboard", "--config", cfg, "--id", "jo", "--name", "JO", "--no-nats-account")
	require.Equal(t, 1, code)
	require.Contains(t, errs, "already in")
	require.Contains(t, errs, "Nothing was changed.")

	code, out, _ = captured(t, "agency", "phase", "--config", cfg, "--audit-log", filepath.Join(dir, "audit.log"), "jo", "run")
	require.Equal(t, 0, code)
	require.Contains(t, out, "phase build → run")
	audit, err := os.ReadFile(filepath.Join(dir, "audit.log"))
	require.NoError(t, err)
	require.Contains(t, string(audit), `"action":"agency_onboarded"`)
	require.Contains(t, string(audit), `"action":"agency_phase"`)

	code, _, errs = captured(t, "agency", "offboard", "--config", cfg, "--export", dir, "jo")
	require.Equal(t, 2, code, "offboarding needs --yes")
	require.Contains(t, errs, "Run again with --yes")
}
