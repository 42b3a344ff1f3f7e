package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "samdrift-e2e")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "samdrift")
	build := exec.Command("go", "build", "-o", binary, "github.com/samdrift/samdrift/cmd/samdrift")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build samdrift:", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proc is a running samdrift process.
type proc struct {
	t    *testing.T
	cmd  *exec.Cmd
	Addr string
	Logs *syncBuffer
	done chan struct{}
}

// start runs `samdrift <args>` and waits until /-/ready answers.
func start(t *testing.T, addr string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, Addr: addr, Logs: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(binary, append(args, "--http.addr", addr)...)
	p.cmd.Stdout, p.cmd.Stderr = p.Logs, p.Logs
	require.NoError(t, p.cmd.Start())
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("samdrift logs:\n%s", p.Logs.String())
		}
	})
	require.Eventually(t, func() bool {
		select {
		case <-p.done:
			t.Fatalf("samdrift exited early:\n%s", p.Logs.String())
		default:
		}
		resp, err := http.Get("http://" + addr + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 60*time.Second, 100*time.Millisecond, "samdrift did not become ready")
	return p
}

// Kill sends SIGKILL and waits for the process to exit.
func (p *proc) Kill() {
	if p.cmd.Process != nil {
		_ = p.cmd.Process.Kill()
	}
	<-p.done
}

// Stop sends SIGTERM and waits for a clean exit.
func (p *proc) Stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.t.Fatalf("samdrift did not stop within 30s after SIGTERM:\n%s", p.Logs.String())
	}
	require.Equal(p.t, 0, p.cmd.ProcessState.ExitCode(), p.Logs.String())
}

// Signal sends sig to the process.
func (p *proc) Signal(sig os.Signal) { require.NoError(p.t, p.cmd.Process.Signal(sig)) }

// promResponse is the Prometheus API envelope.
type promResponse struct {
	Status    string          `json:"status"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
	Data      json.RawMessage `json:"data"`
}

type sample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// api calls the query API with a token and decodes the envelope.
func api(t *testing.T, addr, token, path string, params url.Values) (int, promResponse) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/prometheus/api/v1"+path+"?"+params.Encode(), nil)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var pr promResponse
	if resp.StatusCode < 300 || resp.Header.Get("Content-Type") == "application/json" {
		require.NoError(t, json.Unmarshal(b, &pr), string(b))
	}
	return resp.StatusCode, pr
}

// query runs an instant query and returns the vector.
func query(t *testing.T, addr, token, q string) []sample {
	t.Helper()
	code, pr := api(t, addr, token, "/query", url.Values{"query": {q}})
	require.Equal(t, http.StatusOK, code, "%s: %+v", q, pr)
	var data struct {
		ResultType string   `json:"resultType"`
		Result     []sample `json:"result"`
	}
	require.NoError(t, json.Unmarshal(pr.Data, &data))
	return data.Result
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
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("SAMDRIFT_REQUIRE_PEERS") != "" {
			t.Fatalf("%s not installed (apt-get install it; .ci/run does)", name)
		}
		t.Skipf("%s not installed", name)
	}
	return p
}

// startPeer runs a peer program until the test ends.
func startPeer(t *testing.T, name string, args ...string) *syncBuffer {
	t.Helper()
	logs := &syncBuffer{}
	cmd := exec.Command(peer(t, name), args...)
	cmd.Stdout, cmd.Stderr = logs, logs
	require.NoError(t, cmd.Start())
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("%s logs:\n%s", name, logs.String())
		}
	})
	return logs
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
