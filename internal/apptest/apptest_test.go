package apptest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestStartProcessLogFileAndEnv: a peer's output goes to its log file, it
// runs without this environment's Go tuning, and its memory and CPU are
// read from /proc while it runs.
func TestStartProcessLogFileAndEnv(t *testing.T) {
	t.Setenv("GOGC", "35")
	t.Setenv("GOMEMLIMIT", "1GiB")
	logFile := filepath.Join(t.TempDir(), "log")
	p, err := StartProcess(context.Background(), "sh", "/bin/sh", Options{LogFile: logFile, BareEnv: true, Env: []string{"X=1"}},
		"-c", `echo "gogc=[$GOGC] memlimit=[$GOMEMLIMIT] x=[$X]"; exec sleep 30`)
	require.NoError(t, err)
	defer p.Kill()
	require.Eventually(t, func() bool {
		b, _ := os.ReadFile(logFile)
		return len(b) > 0
	}, 10*time.Second, 10*time.Millisecond)
	b, err := os.ReadFile(logFile)
	require.NoError(t, err)
	require.Equal(t, "gogc=[] memlimit=[] x=[1]\n", string(b))
	require.Equal(t, string(b), p.Logs.String(), "the tail is kept for error messages")
	// Once sh has exec'd sleep (the log line comes before the exec; the
	// two images' memory figures are not comparable).
	require.Eventually(t, func() bool {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p.Pid()))
		return strings.TrimSpace(string(b)) == "sleep"
	}, 10*time.Second, 10*time.Millisecond)
	require.Positive(t, p.RSS())
	require.GreaterOrEqual(t, p.PeakRSS(), p.RSS())
	require.GreaterOrEqual(t, p.CPUSeconds(), 0.0)
	require.Error(t, p.Stop(5*time.Second), "sleep dies of SIGTERM: not a clean exit")
}

func TestLogsKeepTail(t *testing.T) {
	l := &Logs{Max: 10}
	for range 10 {
		_, _ = l.Write([]byte("0123456789"))
	}
	_, _ = l.Write([]byte("abcdefghij"))
	require.LessOrEqual(t, len(l.String()), 20)
	require.Contains(t, l.String(), "abcdefghij")
}

func TestMetricSum(t *testing.T) {
	page := `# HELP x_total X.
# TYPE x_total counter
x_total{a="1"} 2
x_total{a="2"} 3.5
x_total_other 100
x 7
`
	require.Equal(t, 5.5, MetricSum(page, "x_total"))
	require.Equal(t, 7.0, MetricSum(page, "x"))
	require.Zero(t, MetricSum(page, "y"))
}
