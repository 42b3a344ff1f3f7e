package rules

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestRestatementFixture restates windows of the month fixture and checks
// the figures against the hand count: excluding the 45-minute outage of
// Tuesday 6 October raises the month by exactly that bad time; counting it
// good turns its 45 slots good; counting an hour that was up as bad takes
// its slots away; a withdrawn restatement, or one of another agency,
// changes nothing.
func TestRestatementFixture(t *testing.T) {
	mf := BuildMonthFixture(t)
	ctx := context.Background()
	base, err := Month(ctx, mf.Engine, mf.DB, mf.Cat, mf.agency, "2026-10", mf.End().Add(time.Hour))
	require.NoError(t, err)
	good, total, scope := mf.Expect()
	require.InDelta(t, good, base[0].Good, 0)
	require.InDelta(t, total, base[0].Counted, 0)
	d := func(day, h, min int) time.Time { return time.Date(2026, 10, day, h, min, 0, 0, mf.loc) }
	restate := func(rs ...Restatement) MonthFigure {
		figs := append([]MonthFigure(nil), base...)
		got, applied, err := Restate(ctx, mf.Engine, mf.DB, mf.Cat, mf.agency, "2026-10", figs, rs)
		require.NoError(t, err)
		require.Len(t, applied, len(rs)-countOther(rs))
		return got[0]
	}
	r := Restatement{Agency: "alpha", Service: "web", From: d(6, 10, 0), To: d(6, 10, 45), Reason: "change requested by the agency"}

	r.Kind = RestateExcluded
	f := restate(r)
	require.InDelta(t, good, f.Good, 0, "the outage's slots were all bad: no good slot leaves")
	require.InDelta(t, total-45, f.Counted, 0, "45 one-minute slots leave the month")
	require.InDelta(t, base[0].DownSeconds-45*60, f.DownSeconds, 1e-9, "the figure rises by exactly the excluded bad time")
	require.InDelta(t, good/(total-45), f.Availability, 1e-12)
	require.InDelta(t, scope-45*60, f.ScopeSeconds, 1e-9, "the budget's basis loses the window")
	require.Greater(t, f.Availability, base[0].Availability)

	r.Kind = RestateCountedGood
	f = restate(r)
	require.InDelta(t, good+45, f.Good, 0)
	require.InDelta(t, total, f.Counted, 0)

	up := Restatement{Agency: "alpha", Service: "web", From: d(7, 10, 0), To: d(7, 10, 30), Reason: "supplier's own monitoring saw errors", Kind: RestateCountedBad}
	f = restate(up)
	require.InDelta(t, good-30, f.Good, 0, "30 good slots counted bad")

	withdrawn := r
	withdrawn.Kind, withdrawn.WithdrawnAt = RestateExcluded, d(20, 0, 0)
	other := r
	other.Agency = "beta"
	f = restate(withdrawn, other)
	require.Equal(t, base[0], f, "a withdrawn restatement and another agency's change nothing")
}

func countOther(rs []Restatement) int {
	n := 0
	for _, r := range rs {
		if r.Agency != "alpha" {
			n++
		}
	}
	return n
}
