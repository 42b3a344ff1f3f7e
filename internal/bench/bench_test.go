package bench

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/samdrift/samdrift/catalogue"
)

func TestQuantile(t *testing.T) {
	var l []time.Duration
	for i := 100; i >= 1; i-- {
		l = append(l, time.Duration(i)*time.Millisecond)
	}
	require.Equal(t, 51*time.Millisecond, quantile(l, 0.5))
	require.Equal(t, 100*time.Millisecond, quantile(l, 0.99))
	require.Equal(t, 100*time.Millisecond, quantile(l, 1))
	require.Equal(t, 100*time.Millisecond, l[0], "the input is left as it was")
	require.Zero(t, quantile(nil, 0.99))
}

// TestCatalogues: every benchmark catalogue is one the product accepts,
// and the scale mix is the state's (40 large, 100 medium, 200 small in
// 10:4:1, 1,000,000 series in all).
func TestCatalogues(t *testing.T) {
	c, tokens := Catalogue(4, "")
	parsed, err := catalogue.Parse([]byte(c), "bench.yaml")
	require.NoError(t, err)
	require.Len(t, parsed.Agencies, 4)
	id, ok := parsed.Authenticate(tokens[2])
	require.True(t, ok)
	require.Equal(t, "bench3", id.Agency)

	c, _ = AlertsCatalogue(340, "ticketing:\n  backend: remedy\n  remedy:\n    url: http://127.0.0.1:1\n    username: u\n    password_file: /dev/null\n")
	parsed, err = catalogue.Parse([]byte(c), "alerts.yaml")
	require.NoError(t, err)
	require.Len(t, parsed.Agencies, 340)

	as := scaleAgencies(ScaleOptions{Large: 40, Medium: 100, Small: 200, Series: 1_000_000})
	require.Len(t, as, 340)
	total := 0
	for _, a := range as {
		total += a.series
	}
	require.Equal(t, 1_000_000, total)
	require.Equal(t, 10_000, as[0].series)
	require.Equal(t, 4_000, as[40].series)
	require.Equal(t, 1_000, as[339].series)
	_, err = catalogue.Parse([]byte(scaleCatalogue(as)), "scale.yaml")
	require.NoError(t, err)
}
