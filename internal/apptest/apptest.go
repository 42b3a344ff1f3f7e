// Package apptest starts the real samdrift binary and its peers and talks
// to them through typed clients, for the end-to-end tests and the
// benchmarks alike (in the manner of VictoriaMetrics' apptest).
//
// Nothing here fails a test: every call returns its error, so that it can
// be used inside require.EventuallyWithT conditions (with assert and a
// CollectT) as well as outside them.
package apptest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// Binary builds bin/samdrift-like binary of the module once per process and
// returns its path (SAMDRIFT_BINARY, if set, is used as it is).
func Binary() (string, error) {
	if p := os.Getenv("SAMDRIFT_BINARY"); p != "" {
		return p, nil
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "samdrift-apptest")
		if err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(dir, "samdrift")
		cmd := exec.Command("go", "build", "-o", buildPath, "github.com/samdrift/samdrift/cmd/samdrift")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			buildErr = fmt.Errorf("build samdrift: %w\n%s", err, out.String())
		}
	})
	return buildPath, buildErr
}

// Cleanup removes the built binary (call from TestMain after the tests).
func Cleanup() {
	if buildPath != "" && os.Getenv("SAMDRIFT_BINARY") == "" {
		_ = os.RemoveAll(filepath.Dir(buildPath))
	}
}

// FreeAddr returns a loopback address with a port that was free a moment
// ago.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// Logs is a goroutine-safe log sink. With Max set it keeps only about the
// last Max bytes (a long benchmark's logs go to a file instead).
type Logs struct {
	Max int
	mu  sync.Mutex
	b   bytes.Buffer
}

func (s *Logs) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, err := s.b.Write(p)
	if s.Max > 0 && s.b.Len() > 2*s.Max {
		s.b.Next(s.b.Len() - s.Max)
	}
	return n, err
}

func (s *Logs) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Process is a running program: samdrift or a peer.
type Process struct {
	Name string
	// Addr is samdrift's HTTP address (host:port).
	Addr string
	Logs *Logs
	cmd  *exec.Cmd
	done chan struct{}
}

// Options start a process.
type Options struct {
	// Env adds NAME=VALUE entries to the environment.
	Env []string
	// Ready is a URL that answers 200 once the process is ready (none: do
	// not wait). ReadyTimeout bounds the wait (default 60s).
	Ready        string
	ReadyTimeout time.Duration
	// LogFile, if set, receives the process's output (Logs then keeps only
	// its last 64 KiB, for error messages).
	LogFile string
	// BareEnv runs the process without the Go runtime tuning (GOGC,
	// GOMEMLIMIT) of this environment: peers in a benchmark run with their
	// own defaults whatever is set for Samdrift.
	BareEnv bool
}

// StartProcess runs a program with args and waits until it is ready.
func StartProcess(ctx context.Context, name, bin string, o Options, args ...string) (*Process, error) {
	p := &Process{Name: name, Logs: &Logs{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	dieWithParent(p.cmd)
	var out io.Writer = p.Logs
	var logFile *os.File
	if o.LogFile != "" {
		f, err := os.Create(o.LogFile)
		if err != nil {
			return nil, err
		}
		logFile, p.Logs.Max = f, 64<<10
		out = io.MultiWriter(f, p.Logs)
	}
	p.cmd.Stdout, p.cmd.Stderr = out, out
	env := os.Environ()
	if o.BareEnv {
		env = env[:0:0]
		for _, e := range os.Environ() {
			if !strings.HasPrefix(e, "GOGC=") && !strings.HasPrefix(e, "GOMEMLIMIT=") {
				env = append(env, e)
			}
		}
	}
	p.cmd.Env = append(env, o.Env...)
	if err := p.cmd.Start(); err != nil {
		if logFile != nil {
			logFile.Close()
		}
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		_ = p.cmd.Wait()
		if logFile != nil {
			logFile.Close()
		}
		close(p.done)
	}()
	if o.Ready == "" {
		return p, nil
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 60 * time.Second
	}
	deadline := time.Now().Add(o.ReadyTimeout)
	for {
		select {
		case <-p.done:
			return p, fmt.Errorf("%s exited at start:\n%s", name, p.Logs.String())
		default:
		}
		if resp, err := http.Get(o.Ready); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			p.Kill()
			return p, fmt.Errorf("%s not ready at %s within %s:\n%s", name, o.Ready, o.ReadyTimeout, p.Logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Start runs `samdrift <args> --http.addr addr` and waits until /-/ready
// answers.
func Start(ctx context.Context, addr string, args ...string) (*Process, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	p, err := StartProcess(ctx, "samdrift", bin, Options{Ready: "http://" + addr + "/-/ready"}, append(args, "--http.addr", addr)...)
	if p != nil {
		p.Addr = addr
	}
	return p, err
}

// Pid is the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Done is closed when the process has ended.
func (p *Process) Done() <-chan struct{} { return p.done }

// ExitCode is the process's exit status (-1 while it runs).
func (p *Process) ExitCode() int {
	if !p.Exited() {
		return -1
	}
	return p.cmd.ProcessState.ExitCode()
}

// Kill sends SIGKILL and waits for the process to exit.
func (p *Process) Kill() {
	if p.cmd.Process != nil {
		_ = p.cmd.Process.Kill()
	}
	<-p.done
}

// Stop sends SIGTERM and waits up to timeout for a clean exit (status 0).
func (p *Process) Stop(timeout time.Duration) error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.Kill()
		return fmt.Errorf("%s did not stop within %s after SIGTERM", p.Name, timeout)
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		return fmt.Errorf("%s exited with status %d after SIGTERM", p.Name, code)
	}
	return nil
}

// Signal sends sig to the process.
func (p *Process) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// PeakRSS is the process's peak resident memory (VmHWM), in bytes; 0 once
// it has ended.
func (p *Process) PeakRSS() int64 { return procStatus(p.Pid(), "VmHWM:") }

// RSS is its current resident memory (VmRSS), in bytes.
func (p *Process) RSS() int64 { return procStatus(p.Pid(), "VmRSS:") }

func procStatus(pid int, key string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if fs := strings.Fields(l); len(fs) >= 2 && fs[0] == key {
			kb, _ := strconv.ParseInt(fs[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// CPUSeconds is the user and system CPU time the process has used.
func (p *Process) CPUSeconds() float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.Pid()))
	if err != nil {
		return 0
	}
	s := string(b)
	fs := strings.Fields(s[strings.LastIndex(s, ")")+2:])
	if len(fs) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(fs[11], 64)
	st, _ := strconv.ParseFloat(fs[12], 64)
	return (ut + st) / 100 // USER_HZ
}

// Peer returns the path of a real peer program (from Debian's packages).
// ErrNoPeer says it is missing.
func Peer(name string) (string, error) {
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%w: %s (apt-get install it; .ci/run does)", ErrNoPeer, name)
	}
	return p, nil
}

// ErrNoPeer says a peer program is not installed.
var ErrNoPeer = errors.New("peer not installed")

// RequirePeers reports whether a missing peer fails a test rather than
// skipping it (SAMDRIFT_REQUIRE_PEERS, set by CI).
func RequirePeers() bool { return os.Getenv("SAMDRIFT_REQUIRE_PEERS") != "" }

// Cores is the number of CPUs this process may use.
func Cores() int { return runtime.GOMAXPROCS(0) }
