package rules

import (
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/samdrift/samdrift/catalogue"
)

var update = flag.Bool("update", false, "rewrite the golden rule files in testdata/golden")

const goldenURL = "http://samdrift.example:9470"

// TestGolden: the generated rules equal the reviewed files in
// testdata/golden (make golden regenerates them).
func TestGolden(t *testing.T) {
	c, err := catalogue.LoadFile("testdata/catalogue.yaml")
	require.NoError(t, err)
	dir := t.TempDir()
	paths, err := Export(c, dir, goldenURL)
	require.NoError(t, err)
	require.Len(t, paths, 1, "only agencies that accept data get rules")
	for _, p := range paths {
		got, err := os.ReadFile(p)
		require.NoError(t, err)
		golden := filepath.Join("testdata", "golden", filepath.Base(p))
		if *update {
			require.NoError(t, os.MkdirAll(filepath.Dir(golden), 0o755))
			require.NoError(t, os.WriteFile(golden, got, 0o644))
			continue
		}
		want, err := os.ReadFile(golden)
		require.NoError(t, err, "run make golden")
		require.Equal(t, string(want), string(got), "generated rules differ from %s: run make golden and review the diff", golden)
	}
}

// promtool returns Debian's promtool, or skips (fails in CI) without it.
func promtool(t *testing.T) string {
	p, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("SAMDRIFT_REQUIRE_PEERS") != "" {
			t.Fatal("promtool not installed (apt-get install prometheus)")
		}
		t.Skip("promtool not installed")
	}
	return p
}

// TestPromtoolCheckRules: the real promtool accepts the generated rules.
func TestPromtoolCheckRules(t *testing.T) {
	pt := promtool(t)
	c, err := catalogue.LoadFile("testdata/catalogue.yaml")
	require.NoError(t, err)
	paths, err := Export(c, t.TempDir(), goldenURL)
	require.NoError(t, err)
	out, err := exec.Command(pt, append([]string{"check", "rules"}, paths...)...).CombinedOutput()
	require.NoError(t, err, string(out))
	require.Contains(t, string(out), "SUCCESS")
}

// TestPromtoolTestRules runs the promtool unit tests of testdata/*_test.yml
// against the golden rules: each alert fires and resolves when it should.
func TestPromtoolTestRules(t *testing.T) {
	pt := promtool(t)
	tests, err := filepath.Glob("testdata/*_test.yml")
	require.NoError(t, err)
	require.NotEmpty(t, tests)
	out, err := exec.Command(pt, append([]string{"test", "rules"}, tests...)...).CombinedOutput()
	require.NoError(t, err, string(out))
	require.Contains(t, string(out), "SUCCESS")
}
