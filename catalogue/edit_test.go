package catalogue

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func copyExample(t *testing.T) string {
	b, err := os.ReadFile("testdata/example.yaml")
	require.NoError(t, err)
	p := filepath.Join(t.TempDir(), "catalogue.yaml")
	require.NoError(t, os.WriteFile(p, b, 0o640))
	return p
}

func TestAddSetRemoveAgency(t *testing.T) {
	p := copyExample(t)
	before, _ := os.ReadFile(p)
	c, err := AddAgency(p, []byte("id: bo\nname: Barnombudsmannen\nphase: build\nremedy: {company: BO}\nservices:\n  - {id: webb, name: Webb, tier: low}\n"))
	require.NoError(t, err)
	require.Equal(t, PhaseBuild, c.Agency("bo").Phase)
	after, _ := os.ReadFile(p)
	// Everything that was there is still there, comments and blank lines
	// included; the new agency follows the last one.
	require.True(t, strings.HasPrefix(string(after), string(before[:strings.Index(string(before), "# Where incidents go.")])))
	require.Contains(t, string(after), "  - id: bo\n    name: Barnombudsmannen\n")
	require.Contains(t, string(after), "# Where incidents go.")
	require.Less(t, strings.Index(string(after), "id: bo"), strings.Index(string(after), "# Where incidents go."))

	_, err = AddAgency(p, []byte("id: bo\nname: Again\nphase: plan\n"))
	require.ErrorContains(t, err, `agency "bo" is already in the catalogue`)
	_, err = AddAgency(p, []byte("id: Bad!\nname: X\nphase: plan\n"))
	require.ErrorContains(t, err, `agency id "Bad!" must match`)
	unchanged, _ := os.ReadFile(p)
	require.Equal(t, after, unchanged, "a refused edit writes nothing")

	c, old, err := SetPhase(p, "bo", PhaseRun)
	require.NoError(t, err)
	require.Equal(t, PhaseBuild, old)
	require.Equal(t, PhaseRun, c.Agency("bo").Phase)
	_, _, err = SetPhase(p, "digg", "operate")
	require.ErrorContains(t, err, `phase "operate" must be one of plan, build, run`)
	// The phase comment of digg survives a phase change.
	_, _, err = SetPhase(p, "digg", PhaseBuild)
	require.NoError(t, err)
	b, _ := os.ReadFile(p)
	require.Contains(t, string(b), "    phase: build               # plan | build | run\n")

	c, err = RemoveAgency(p, "ssc")
	require.NoError(t, err)
	require.Nil(t, c.Agency("ssc"))
	require.NotNil(t, c.Agency("digg"))
	require.NotNil(t, c.Agency("bo"))
	b, _ = os.ReadFile(p)
	require.NotContains(t, string(b), "Statens servicecenter")
	require.Contains(t, string(b), "# Where incidents go.")
}

func TestEditRefusesAConcurrentChange(t *testing.T) {
	p := copyExample(t)
	e, err := openEditable(p)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(p, append(e.text, []byte("# someone else\n")...), 0o640))
	_, err = e.commit(e.lines)
	require.ErrorIs(t, err, ErrChanged)
}

func TestAgencyYAMLRoundTrips(t *testing.T) {
	p := copyExample(t)
	orig, err := LoadFile(p)
	require.NoError(t, err)
	b, err := AgencyYAML(p, "ssc")
	require.NoError(t, err)
	_, err = RemoveAgency(p, "ssc")
	require.NoError(t, err)
	c, err := AddAgency(p, b)
	require.NoError(t, err)
	want, got := orig.Agency("ssc"), c.Agency("ssc")
	require.Equal(t, want.Name, got.Name)
	require.Equal(t, want.Credentials, got.Credentials)
	require.Equal(t, want.EffectiveLimits(), got.EffectiveLimits())
	require.Len(t, got.Services, len(want.Services))
	_, err = AgencyYAML(p, "ghost")
	require.Error(t, err)
}
