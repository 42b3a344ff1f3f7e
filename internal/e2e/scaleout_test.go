package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/samdrift/samdrift/bus"
	"github.com/samdrift/samdrift/catalogue"
	"github.com/samdrift/samdrift/collector"
	"github.com/samdrift/samdrift/internal/apptest"
)

// natsCluster starts a three-node NATS cluster with JetStream on loopback
// ports, in this test process (the module's nats-server); each node can be
// shut down alone.
func natsCluster(t *testing.T) ([]*server.Server, []string) {
	t.Helper()
	const n = 3
	client, cluster := make([]int, n), make([]int, n)
	for i := range n {
		client[i], cluster[i] = freePort(t), freePort(t)
	}
	var servers []*server.Server
	var urls []string
	for i := range n {
		var routes []string
		for j := range n {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", cluster[j]))
			}
		}
		o := &server.Options{
			ServerName: fmt.Sprintf("n%d", i+1), Host: "127.0.0.1", Port: client[i], NoSigs: true,
			JetStream: true, StoreDir: t.TempDir(),
			Cluster: server.ClusterOpts{Name: "samdrift-test", Host: "127.0.0.1", Port: cluster[i]},
			Routes:  server.RoutesFromStr(strings.Join(routes, ",")),
		}
		s, err := server.NewServer(o)
		require.NoError(t, err)
		s.Start()
		t.Cleanup(s.Shutdown)
		servers = append(servers, s)
		urls = append(urls, s.ClientURL())
	}
	for _, s := range servers {
		require.True(t, s.ReadyForConnections(20*time.Second))
	}
	require.Eventually(t, func() bool {
		for _, s := range servers {
			if s.JetStreamIsLeader() {
				return true
			}
		}
		return false
	}, 30*time.Second, 100*time.Millisecond, "the JetStream meta leader is elected")
	return servers, urls
}

func natsFlags(urls []string) []string {
	var out []string
	for _, u := range urls {
		out = append(out, "--nats.url", u)
	}
	return append(out, "--nats.replicas", "3")
}

// component starts one scale-out process.
func component(t *testing.T, name, instance, cfg string, nats []string, extra ...string) *proc {
	t.Helper()
	args := append([]string{name, "--config", cfg, "--data-dir", filepath.Join(t.TempDir(), instance), "--instance", instance}, nats...)
	return start(t, freeAddr(t), append(args, extra...)...)
}

// TestScaleOutSurvivesNodeAndRouterLoss: collector, two routers, two
// ticketing replicas and a query replica run as separate processes on a
// three-node NATS cluster with R3 streams. While data and alerts stream
// in, one NATS node and one router are killed: every acknowledged sample
// is stored, and every alert makes exactly one incident.
func TestScaleOutSurvivesNodeAndRouterLoss(t *testing.T) {
	t.Parallel()
	servers, urls := natsCluster(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "catalogue.yaml")
	writeFile(t, cfg, pushCatalogue())

	nf := natsFlags(urls)
	col := component(t, "collector", "c1", cfg, nf)
	r1 := component(t, "router", "r1", cfg, nf)
	component(t, "router", "r2", cfg, nf)
	component(t, "ticketing", "t1", cfg, nf)
	component(t, "ticketing", "t2", cfg, nf)
	q := component(t, "query", "q1", cfg, nf)

	// A sender that retries until acknowledged, as Prometheus's remote
	// write does; each push is one sample of one series.
	base := time.Now().Add(-time.Minute).Truncate(time.Second)
	var sent atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			s := ts(base.Add(time.Duration(i)*10*time.Millisecond), float64(i), "__name__", "e2e_scale")
			for {
				if r := pushRW(t, col.Addr, alphaToken, s); r.code == 204 {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			sent.Add(1)
		}
	})
	alertStart := time.Now().Add(-time.Minute)
	const alertnames = 5
	wg.Go(func() {
		for round := 0; ; round++ {
			select {
			case <-stop:
				return
			default:
			}
			// Alertmanager re-sends firing alerts; every round names all.
			var as []map[string]string
			for k := range alertnames {
				as = append(as, map[string]string{"alertname": fmt.Sprintf("Scale%d", k), "service": "web", "severity": "critical"})
			}
			for {
				if r := postAlerts(t, col.Addr, alphaToken, webhook("firing", alertStart, as...)); r.code/100 == 2 {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			time.Sleep(200 * time.Millisecond)
		}
	})

	require.Eventually(t, func() bool { return sent.Load() > 100 }, 30*time.Second, 50*time.Millisecond)
	servers[1].Shutdown() // a NATS node dies
	r1.Kill()             // and a router
	t.Logf("killed NATS node n2 and router r1 after %d samples", sent.Load())
	n0 := sent.Load()
	require.Eventually(t, func() bool { return sent.Load() > n0+200 }, 60*time.Second, 100*time.Millisecond, "intake goes on after the failures")
	close(stop)
	wg.Wait()
	total := sent.Load()

	var stored string
	defer func() { t.Logf("stored %s of %d acknowledged samples", stored, total) }()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		v := query(c, q.Addr, alphaToken, `count_over_time(e2e_scale[1h])`)
		if len(v) == 1 {
			stored, _ = v[0].Value[1].(string)
		}
		assert.Equal(c, strconv.FormatInt(total, 10), stored)
	}, 60*time.Second, 500*time.Millisecond, "every acknowledged sample is stored (%d acknowledged)", total)

	var names []string
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		_, incs := incidents(c, q.Addr, alphaToken, "")
		names = names[:0]
		for _, inc := range incs {
			names = append(names, inc.AlertName)
		}
		assert.GreaterOrEqual(c, len(names), alertnames)
	}, 30*time.Second, 500*time.Millisecond)
	time.Sleep(3 * time.Second) // late duplicates would show up by now
	_, incs := incidents(t, q.Addr, alphaToken, "")
	names = names[:0]
	for _, inc := range incs {
		names = append(names, inc.AlertName)
	}
	sort.Strings(names)
	require.Equal(t, []string{"Scale0", "Scale1", "Scale2", "Scale3", "Scale4"}, names, "one incident per alert, no duplicates")
	t.Logf("%d samples and %d alerts through a NATS node and router failure", total, alertnames)
}

// scrapeLog records which collector scraped which target, when.
type scrapeLog struct {
	mu  sync.Mutex
	hit map[string][]scrapeHit // target -> scrapes
}

type scrapeHit struct {
	at time.Time
	by string
}

func (l *scrapeLog) target(t *testing.T, name string) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ua := r.Header.Get("User-Agent")
		by := ua[strings.LastIndex(ua, "/")+1:]
		l.mu.Lock()
		l.hit[name] = append(l.hit[name], scrapeHit{time.Now(), by})
		l.mu.Unlock()
		fmt.Fprintf(w, "e2e_target_up{name=%q} 1\n", name)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// summary lists, per target, how many scrapes each collector made and the
// last one's time.
func (l *scrapeLog) summary() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for name, hits := range l.hit {
		n := map[string]int{}
		for _, h := range hits {
			n[h.by]++
		}
		fmt.Fprintf(&b, "%s: %v last %s; ", name, n, hits[len(hits)-1].at.Format("15:04:05.000"))
	}
	return b.String()
}

// owners returns, per target, the collectors that scraped it in [from, to).
func (l *scrapeLog) owners(from, to time.Time) map[string][]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string][]string{}
	for name, hits := range l.hit {
		seen := map[string]bool{}
		for _, h := range hits {
			if !h.at.Before(from) && h.at.Before(to) && !seen[h.by] {
				seen[h.by] = true
				out[name] = append(out[name], h.by)
			}
		}
		sort.Strings(out[name])
	}
	return out
}

// TestCollectorResharding: three collectors share twelve targets, each
// scraped by exactly one; when one collector is killed, its targets are
// picked up by the others within the membership TTL and a poll, the
// others keep theirs, and no target is ever scraped by two at once.
func TestCollectorResharding(t *testing.T) {
	_, url := externalNATS(t)
	log := &scrapeLog{hit: map[string][]scrapeHit{}}
	addrs := map[string]string{} // target name -> address
	var quoted []string
	for i := range 12 {
		name := fmt.Sprintf("t%02d", i)
		addrs[name] = log.target(t, name)
		quoted = append(quoted, fmt.Sprintf("%q", addrs[name]))
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "catalogue.yaml")
	writeFile(t, cfg, fmt.Sprintf(`provider: {name: P}
defaults: {scrape_interval: 1s, scrape_timeout: 500ms}
agencies:
  - id: alpha
    name: Alpha
    phase: run
    credentials: [{name: alpha-cred, token_sha256: %s}]
    services: [{id: web, name: Web, tier: high, scrape: [{targets: [%s]}]}]
`, catalogue.HashToken(alphaToken), strings.Join(quoted, ", ")))
	// Debug logs show, should this fail, what each collector's scrape
	// manager did and which targets it took.
	flags := []string{"--collector.ttl", "3s", "--log.level", "debug"}
	var cs []*proc
	for _, name := range []string{"c1", "c2", "c3"} {
		cs = append(cs, component(t, "collector", name, cfg, []string{"--nats.url", url}, flags...))
	}
	// settled waits until, over the last window, every target was scraped
	// by exactly the collector the consistent hash gives it among members
	// (with random ports, a collector may own none of the 12 targets).
	settled := func(window time.Duration, members ...string) map[string][]string {
		want := map[string][]string{}
		for name, addr := range addrs {
			want[name] = []string{bus.Owner(members, collector.JobName("alpha", "web", 0)+"/"+addr)}
		}
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			now := time.Now()
			assert.Equal(c, want, log.owners(now.Add(-window), now), "each target scraped by its owner among %v only; scrapes so far: %s", members, log.summary())
		}, 30*time.Second, 250*time.Millisecond)
		return want
	}
	before := settled(3*time.Second, "c1", "c2", "c3")
	t.Logf("owners with three collectors: %v", before)

	cs[1].Kill()
	killed := time.Now()
	after := settled(3*time.Second, "c1", "c3")
	t.Logf("owners after c2 was killed (%.1fs): %v", time.Since(killed).Seconds(), after)
	require.Less(t, time.Since(killed), 15*time.Second, "c2's targets are picked up within the TTL and a poll")
	for name, o := range before {
		if o[0] != "c2" {
			require.Equal(t, o, after[name], "target %s of a surviving collector stays put", name)
		}
	}
	// Never two collectors on a target at once: consecutive scrapes of a
	// target by different collectors are an interval apart.
	log.mu.Lock()
	defer log.mu.Unlock()
	for name, hits := range log.hit {
		for i := 1; i < len(hits); i++ {
			if hits[i].by != hits[i-1].by {
				require.Greater(t, hits[i].at.Sub(hits[i-1].at), 300*time.Millisecond, "target %s scraped by %s and %s at once", name, hits[i-1].by, hits[i].by)
			}
		}
	}
}

// TestLimitsHoldAcrossRouters: an agency pushing as fast as it can through
// two collectors, routed by two routers, is held to its ingestion rate as a
// whole: each router enforces its share (Mimir's global strategy).
func TestLimitsHoldAcrossRouters(t *testing.T) {
	_, url := externalNATS(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "catalogue.yaml")
	writeFile(t, cfg, fmt.Sprintf(`provider: {name: P}
roles:
  ops:
    credentials: [{name: noc, token_sha256: %s}]
agencies:
  - id: alpha
    name: Alpha
    phase: run
    credentials: [{name: alpha-cred, token_sha256: %s}]
    limits: {ingestion_rate: 2000, ingestion_burst_size: 2500, max_samples_per_request: 250}
`, catalogue.HashToken(opsToken), catalogue.HashToken(alphaToken)))
	nf := []string{"--nats.url", url}
	var routers []*proc
	for _, name := range []string{"r1", "r2"} {
		routers = append(routers, component(t, "router", name, cfg, nf))
	}
	c1 := component(t, "collector", "c1", cfg, nf)
	c2 := component(t, "collector", "c2", cfg, nf)
	for _, r := range routers {
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			m, err := client(r.Addr, opsToken).Metrics()
			require.NoError(c, err)
			assert.Contains(c, m, "samdrift_router_members 2")
		}, 20*time.Second, 200*time.Millisecond, "each router sees the other")
	}
	const run = 10 * time.Second
	var acked atomic.Int64
	var wg sync.WaitGroup
	began := time.Now()
	for i := range 4 {
		addr := []string{c1.Addr, c2.Addr}[i%2]
		wg.Go(func() {
			cl := client(addr, alphaToken)
			for j := 0; time.Since(began) < run; j++ {
				series := make([]prompb.TimeSeries, 250)
				for k := range series {
					series[k] = ts(time.Now(), 1, "__name__", "limited", "w", strconv.Itoa(i), "k", strconv.Itoa(k))
				}
				r, err := cl.Push(series...)
				if err == nil && r.Status == http.StatusNoContent {
					acked.Add(250)
				} else {
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(began).Seconds()
	allowed := 2000*elapsed + 2500
	t.Logf("two collectors and two routers admitted %d samples in %.1fs against a limit allowing %.0f", acked.Load(), elapsed, allowed)
	require.LessOrEqual(t, float64(acked.Load()), allowed*1.1, "the agency's rate holds across routers")
	require.GreaterOrEqual(t, float64(acked.Load()), allowed*0.5, "and the agency gets its rate")
}

// rulesShares reads how many agencies each rules process evaluates.
func rulesShares(t T, ps ...*proc) []float64 {
	helper(t)
	var out []float64
	for _, p := range ps {
		m, err := client(p.Addr, opsToken).Metrics()
		require.NoError(t, err)
		out = append(out, apptest.MetricSum(m, "samdrift_rules_agencies"))
	}
	return out
}

// TestRulesSharded: two rules processes share the agencies (rendezvous
// hashing over the bus's membership, as the collectors do), and when one
// dies the other takes all of them within the membership TTL.
func TestRulesSharded(t *testing.T) {
	t.Parallel()
	_, natsURL := externalNATS(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "catalogue.yaml")
	writeFile(t, cfg, thanosCatalogue(12, ""))
	nf := []string{"--nats.url", natsURL, "--collector.ttl", "2s"}
	ru1 := component(t, "rules", "ru1", cfg, nf)
	ru2 := component(t, "rules", "ru2", cfg, nf)
	var share []float64
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		share = rulesShares(c, ru1, ru2)
		assert.Equal(c, 12.0, share[0]+share[1], "every agency evaluated once: %v", share)
		assert.Positive(c, share[0], "ru1 has a share")
		assert.Positive(c, share[1], "ru2 has a share")
	}, 30*time.Second, 200*time.Millisecond)
	t.Logf("ru1 evaluates %v agencies, ru2 %v", share[0], share[1])
	ru1.Kill()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Equal(c, []float64{12}, rulesShares(c, ru2))
	}, 20*time.Second, 200*time.Millisecond, "ru1's agencies move to ru2 within the TTL")
}
