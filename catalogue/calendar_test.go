package catalogue

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestServiceHours(t *testing.T) {
	sto, err := time.LoadLocation("Europe/Stockholm")
	require.NoError(t, err)
	sh, err := ParseServiceHours("Mon-Fri 07:00-18:00, Sat 09:00-13:00")
	require.NoError(t, err)
	for _, tc := range []struct {
		at   string
		want bool
	}{
		{"2026-11-23T07:00:00", true},  // Monday opening
		{"2026-11-23T06:59:00", false}, // before
		{"2026-11-23T18:00:00", false}, // end is exclusive
		{"2026-11-27T17:59:00", true},  // Friday
		{"2026-11-28T10:00:00", true},  // Saturday
		{"2026-11-28T13:00:00", false},
		{"2026-11-29T10:00:00", false}, // Sunday
	} {
		t.Run(tc.at, func(t *testing.T) {
			at, err := time.ParseInLocation("2006-01-02T15:04:05", tc.at, sto)
			require.NoError(t, err)
			require.Equal(t, tc.want, sh.Contains(at))
		})
	}
	always, err := ParseServiceHours("24x7")
	require.NoError(t, err)
	require.True(t, always.Always())

	for _, bad := range []string{"Mon-Fri", "Mon-Fri 7-18", "Mon-Fri 18:00-07:00", "Mon-Fri 25:00-26:00", "Someday 07:00-08:00"} {
		_, err := ParseServiceHours(bad)
		require.Error(t, err, bad)
	}
	wrap, err := ParseServiceHours("Sat-Sun 00:00-24:00")
	require.NoError(t, err)
	require.True(t, wrap.Contains(time.Date(2026, 11, 29, 23, 59, 0, 0, sto)))
}

func TestScheduleWindows(t *testing.T) {
	sto, err := time.LoadLocation("Europe/Stockholm")
	require.NoError(t, err)
	from := time.Date(2026, 11, 1, 0, 0, 0, 0, sto)
	to := time.Date(2026, 12, 1, 0, 0, 0, 0, sto)
	d := func(day, h, m int) time.Time { return time.Date(2026, 11, day, h, m, 0, 0, sto) }
	for _, tc := range []struct {
		spec string
		want []Window
	}{
		{"first Tue of month 18:00-22:00", []Window{{d(3, 18, 0), d(3, 22, 0)}}},
		{"last Sun of month 02:00-06:00", []Window{{d(29, 2, 0), d(29, 6, 0)}}},
		{"third Wed of month 20:00-21:00", []Window{{d(18, 20, 0), d(18, 21, 0)}}},
		{"every Sat 23:00-01:00", []Window{
			{time.Date(2026, 10, 31, 23, 0, 0, 0, sto), d(1, 1, 0)}, // began the day before, runs into the range
			{d(7, 23, 0), d(8, 1, 0)}, {d(14, 23, 0), d(15, 1, 0)}, {d(21, 23, 0), d(22, 1, 0)}, {d(28, 23, 0), d(29, 1, 0)},
		}},
	} {
		t.Run(tc.spec, func(t *testing.T) {
			sc, err := ParseSchedule(tc.spec)
			require.NoError(t, err)
			got := sc.Windows(from, to, sto)
			require.Len(t, got, len(tc.want))
			for i := range got {
				require.True(t, tc.want[i].Start.Equal(got[i].Start), "start %d: %s", i, got[i].Start)
				require.True(t, tc.want[i].End.Equal(got[i].End), "end %d: %s", i, got[i].End)
			}
		})
	}
	for _, bad := range []string{"every day", "first Tue 18:00-22:00", "daily 10:00-10:00", "first Tue of month 18-22"} {
		_, err := ParseSchedule(bad)
		require.Error(t, err, bad)
	}
}

func TestInMaintenance(t *testing.T) {
	c, err := LoadFile("testdata/example.yaml")
	require.NoError(t, err)
	a := c.Agency("digg")
	sto := a.Location()
	require.True(t, a.InMaintenance(time.Date(2026, 12, 1, 19, 0, 0, 0, sto)), "first Tuesday of December")
	require.False(t, a.InMaintenance(time.Date(2026, 12, 8, 19, 0, 0, 0, sto)), "second Tuesday")
	require.True(t, a.InMaintenance(time.Date(2026, 12, 6, 2, 0, 0, 0, sto)), "datacenter move")
	require.False(t, a.InMaintenance(time.Date(2026, 12, 6, 4, 0, 0, 0, sto)), "move window end is exclusive")
}
