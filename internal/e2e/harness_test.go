package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/samdrift/samdrift/internal/apptest"
)

// binary is the samdrift built for this run (apptest builds it once).
var binary string

func TestMain(m *testing.M) {
	var err error
	if binary, err = apptest.Binary(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	apptest.Cleanup()
	os.Exit(code)
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	a, err := apptest.FreeAddr()
	require.NoError(t, err)
	return a
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer = apptest.Logs

// proc is a running samdrift process, stopped when its test ends.
type proc struct {
	*apptest.Process
	t *testing.T
}

// start runs `samdrift <args>` and waits until /-/ready answers.
func start(t *testing.T, addr string, args ...string) *proc {
	t.Helper()
	p, err := apptest.Start(context.Background(), addr, args...)
	if p != nil {
		t.Cleanup(func() {
			p.Kill()
			if t.Failed() {
				t.Logf("samdrift logs:\n%s", p.Logs.String())
			}
		})
	}
	require.NoError(t, err)
	return &proc{Process: p, t: t}
}

// Stop sends SIGTERM and waits for a clean exit.
func (p *proc) Stop() {
	p.t.Helper()
	require.NoError(p.t, p.Process.Stop(30*time.Second), p.Logs.String())
}

// Signal sends sig to the process.
func (p *proc) Signal(sig os.Signal) { require.NoError(p.t, p.Process.Signal(sig)) }

// client is an API client of the samdrift at addr with token.
func client(addr, token string) apptest.Client { return apptest.NewClient(addr, token) }

// promResponse is the Prometheus API envelope.
type promResponse = apptest.PromResponse

type sample = apptest.Sample

// api calls the query API with a token and decodes the envelope.
func api(t T, addr, token, path string, params url.Values) (int, promResponse) {
	helper(t)
	code, pr, err := client(addr, token).API(path, params)
	if code == 0 {
		require.NoError(t, err)
	}
	return code, pr
}

// query runs an instant query and returns the vector (not inside an
// Eventually condition: use client(...).Query there).
func query(t T, addr, token, q string) []sample {
	helper(t)
	v, err := client(addr, token).Query(q)
	require.NoError(t, err)
	return v
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// peer returns the path of a real peer program from Debian's packages. It
// skips the test where the peer is missing, unless SAMDRIFT_REQUIRE_PEERS is
// set (as CI does), where a missing peer is a failure.
func peer(t *testing.T, name string) string {
	t.Helper()
	p, err := apptest.Peer(name)
	if errors.Is(err, apptest.ErrNoPeer) {
		if apptest.RequirePeers() {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	return p
}

// startPeer runs a peer program until the test ends.
func startPeer(t *testing.T, name string, args ...string) *syncBuffer {
	t.Helper()
	p, err := apptest.StartProcess(context.Background(), name, peer(t, name), apptest.Options{}, args...)
	require.NoError(t, err)
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("%s logs:\n%s", name, p.Logs.String())
		}
	})
	return p.Logs
}

// tokens used by the test catalogues.
const (
	opsToken   = "noc-token"
	alphaToken = "alpha-token"
	betaToken  = "beta-token"
)

func execCommand(name string, args ...string) *exec.Cmd { return exec.Command(name, args...) }

// metricsGet reads /metrics with the provider's ops token (agencies may
// not read it: it names every agency).
func metricsGet(addr string) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+opsToken)
	return http.DefaultClient.Do(req)
}

// T is what the helpers fail through: a *testing.T outside Eventually
// conditions, the condition's *assert.CollectT inside them (where a
// failure retries the condition instead of failing the test).
type T = require.TestingT

func helper(t T) {
	if h, ok := t.(interface{ Helper() }); ok {
		h.Helper()
	}
}
