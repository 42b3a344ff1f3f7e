package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/samdrift/samdrift/catalogue"
	"github.com/samdrift/samdrift/internal/apptest"
)

// thanosBinary is Thanos built by `make thanos` (SAMDRIFT_THANOS, set by
// `make test-thanos`); the test skips without it.
func thanosBinary(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("SAMDRIFT_THANOS")
	if bin == "" {
		t.Skip("SAMDRIFT_THANOS is not set: run make test-thanos (it builds Thanos v0.42.5)")
	}
	_, err := os.Stat(bin)
	require.NoError(t, err, "SAMDRIFT_THANOS")
	return bin
}

// thanosProc is one Thanos process, restartable with the same flags.
type thanosProc struct {
	t    *testing.T
	name string
	bin  string
	args []string
	http string
	p    *apptest.Process
}

func (tp *thanosProc) start() {
	tp.t.Helper()
	p, err := apptest.StartProcess(context.Background(), tp.name, tp.bin, apptest.Options{Ready: "http://" + tp.http + "/-/ready", ReadyTimeout: 90 * time.Second}, tp.args...)
	if p != nil {
		tp.t.Cleanup(func() {
			p.Kill()
			if tp.t.Failed() {
				tp.t.Logf("%s logs:\n%s", tp.name, p.Logs.String())
			}
		})
	}
	require.NoError(tp.t, err, tp.name)
	tp.p = p
}

// thanosCatalogue has n agencies (a01…), each with a token
// "<id>-token", one service, and the test's rule file.
func thanosCatalogue(n int, ruleFile string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `provider: {name: Test provider, timezone: Europe/Stockholm}
roles:
  ops:
    credentials: [{name: noc, token_sha256: %s}]
agencies:
`, catalogue.HashToken(opsToken))
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("a%02d", i)
		fmt.Fprintf(&b, `  - id: %s
    name: Agency %d
    phase: run
    credentials: [{name: %s-cred, token_sha256: %s}]
    services: [{id: web, name: Web, tier: high}]
    rule_files: [%s]
`, id, i, id, catalogue.HashToken(id+"-token"), ruleFile)
	}
	return b.String()
}

// TestThanosWholeState is the engine-backed deployment for many agencies:
// three NATS servers, three Thanos receivers in a hashring with
// replication factor 2 (the tenant from THANOS-TENANT), Thanos Query
// enforcing tenancy in front, and Samdrift in nine processes — two
// collectors, two routers exporting to the receivers, two rules processes
// sharding the agencies and two query processes, both reading the engine,
// and ticketing. Twenty agencies push samples and raise alarms. Mid-stream
// one receiver, one rules process, one router and one query process are
// killed (the receiver comes back later, as a failed node does): every
// acknowledged sample is queryable per agency through the surviving query
// process, every alarm is one incident, and no agency's token reads
// another tenant — through the API, label values, the engine's own tenant
// label or a forged tenant header.
func TestThanosWholeState(t *testing.T) {
	bin := thanosBinary(t)
	_, urls := natsCluster(t)
	dir := t.TempDir()
	const agencies = 20
	ids := make([]string, agencies)
	for i := range ids {
		ids[i] = fmt.Sprintf("a%02d", i+1)
	}

	// Thanos: three receivers in one hashring, replication factor 2.
	type ports struct{ grpc, http, write string }
	recv := make([]ports, 3)
	var endpoints []string
	for i := range recv {
		recv[i] = ports{freeAddr(t), freeAddr(t), freeAddr(t)}
		endpoints = append(endpoints, strconv.Quote(recv[i].grpc))
	}
	hashring := filepath.Join(dir, "hashring.json")
	writeFile(t, hashring, `[{"hashring": "default", "endpoints": [`+strings.Join(endpoints, ", ")+`]}]`)
	receivers := make([]*thanosProc, 3)
	for i, p := range recv {
		receivers[i] = &thanosProc{t: t, name: fmt.Sprintf("thanos-receive-%d", i+1), bin: bin, http: p.http, args: []string{
			"receive", "--tsdb.path", filepath.Join(dir, fmt.Sprintf("receive%d", i+1)),
			"--grpc-address", p.grpc, "--http-address", p.http, "--remote-write.address", p.write,
			"--receive.capnproto-address", freeAddr(t),
			"--receive.local-endpoint", p.grpc, "--receive.hashrings-file", hashring,
			"--receive.replication-factor", "2", "--label", fmt.Sprintf(`receive_replica="r%d"`, i+1),
			"--receive.tenant-header", "THANOS-TENANT", "--tsdb.out-of-order.time-window", "1h",
			"--tsdb.retention", "1d", "--log.level", "warn",
		}}
	}
	for _, r := range receivers {
		r.start()
	}
	qaddr := freeAddr(t)
	tq := &thanosProc{t: t, name: "thanos-query", bin: bin, http: qaddr, args: []string{
		"query", "--http-address", qaddr, "--grpc-address", freeAddr(t),
		"--query.replica-label", "receive_replica", "--deduplication.func", "chain",
		"--query.enforce-tenancy", "--query.tenant-header", "THANOS-TENANT", "--log.level", "warn",
	}}
	for _, p := range recv {
		tq.args = append(tq.args, "--endpoint", p.grpc)
	}
	tq.start()

	// Samdrift.
	ruleFile := filepath.Join(dir, "rules.yml")
	writeFile(t, ruleFile, `groups:
  - name: thanos-e2e
    interval: 1s
    rules:
      - record: e2e:thanos_seq:max
        expr: max(e2e_thanos)
      - alert: ThanosE2EAlarm
        expr: max(e2e_thanos_alarm) > 0
        for: 2s
        labels: {severity: critical, service: web}
`)
	cfg := filepath.Join(dir, "catalogue.yaml")
	writeFile(t, cfg, thanosCatalogue(agencies, ruleFile))
	nf := natsFlags(urls)
	engine := []string{"--engine.url", "http://" + qaddr, "--engine.tenant-header", "THANOS-TENANT", "--collector.ttl", "3s"}
	export := []string{"--remote.tenant-header", "THANOS-TENANT"}
	for _, p := range recv {
		export = append(export, "--remote-write.url", "http://"+p.write+"/api/v1/receive")
	}
	// One after the other: each creates or checks the R3 streams.
	c1 := component(t, "collector", "c1", cfg, nf)
	c2 := component(t, "collector", "c2", cfg, nf)
	r1 := component(t, "router", "r1", cfg, nf, export...)
	component(t, "router", "r2", cfg, nf, export...)
	ru1 := component(t, "rules", "ru1", cfg, nf, engine...)
	ru2 := component(t, "rules", "ru2", cfg, nf, engine...)
	q1 := component(t, "query", "q1", cfg, nf, engine...)
	q2 := component(t, "query", "q2", cfg, nf, engine...)
	component(t, "ticketing", "t1", cfg, nf)

	// Senders: each push carries one agency's sample and its alarm gauge;
	// it is retried, on the other collector, until acknowledged. The
	// first half of the agencies raise their alarm at once, the others
	// after the kills.
	var acked [agencies]atomic.Int64
	var alarmsLate atomic.Bool
	stop := make(chan struct{})
	var senders sync.WaitGroup
	for w := range 4 {
		senders.Go(func() {
			last := make([]time.Time, agencies)
			cols := []string{c1.Addr, c2.Addr}
			for i := w; ; i += 4 {
				select {
				case <-stop:
					return
				default:
				}
				a := i % agencies
				at := time.Now().Truncate(time.Millisecond)
				if !at.After(last[a]) {
					at = last[a].Add(time.Millisecond)
				}
				last[a] = at
				alarm := 0.0
				if a < agencies/2 || alarmsLate.Load() {
					alarm = 1
				}
				series := []prompb.TimeSeries{ts(at, float64(i), "__name__", "e2e_thanos"), ts(at, alarm, "__name__", "e2e_thanos_alarm")}
				for try := 0; ; try++ {
					if r := pushRW(t, cols[(i+try)%2], ids[a]+"-token", series...); r.code == 204 {
						break
					}
					time.Sleep(50 * time.Millisecond)
				}
				acked[a].Add(1)
			}
		})
	}
	total := func() int64 {
		var n int64
		for i := range acked {
			n += acked[i].Load()
		}
		return n
	}

	// The first alarms become incidents before anything fails.
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		for _, id := range ids[:agencies/2] {
			_, incs := incidents(c, q1.Addr, id+"-token", "")
			assert.Len(c, incs, 1, id)
		}
	}, 120*time.Second, time.Second, "the first ten agencies' alarms become incidents")

	// The rules processes share the agencies.
	var share []float64
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		share = rulesShares(c, ru1, ru2)
		assert.Equal(c, agencies, int(share[0]+share[1]), "two rules processes share the agencies: %v", share)
		assert.Positive(c, share[0])
		assert.Positive(c, share[1])
	}, 30*time.Second, 200*time.Millisecond)
	t.Logf("rules ru1 evaluates %v agencies, ru2 %v", share[0], share[1])

	n0 := total()
	receivers[1].p.Kill()
	ru1.Kill()
	r1.Kill()
	q1.Kill()
	t.Logf("killed thanos-receive-2, rules ru1, router r1 and query q1 after %d acknowledged samples", n0)
	alarmsLate.Store(true)

	// While the receiver is down, intake goes on, queries are answered
	// (the engine's partial answer holds every series: replication 2),
	// and the other agencies' alarms become incidents on the surviving
	// rules process.
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Greater(c, total(), n0+1000)
		for _, id := range ids {
			_, incs := incidents(c, q2.Addr, id+"-token", "")
			assert.Len(c, incs, 1, id)
		}
	}, 120*time.Second, time.Second, "intake and incidents go on with a receiver, a rules process, a router and a query process down")
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Equal(c, []float64{agencies}, rulesShares(c, ru2))
	}, 30*time.Second, 200*time.Millisecond, "ru1's agencies moved to ru2")
	code, _ := api(t, q2.Addr, ids[0]+"-token", "/query", map[string][]string{"query": {"count_over_time(e2e_thanos[1h])"}})
	require.Equal(t, http.StatusOK, code, "queries are answered while a receiver is down")

	receivers[1].start() // the failed node comes back (its WAL holds what it acknowledged)
	time.Sleep(2 * time.Second)
	close(stop)
	senders.Wait()

	// Every acknowledged sample, per agency, through the surviving query
	// process.
	for a, id := range ids {
		want := strconv.FormatInt(acked[a].Load(), 10)
		var got string
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			v := query(c, q2.Addr, id+"-token", `count_over_time(e2e_thanos[1h])`)
			if assert.Len(c, v, 1) {
				got, _ = v[0].Value[1].(string)
				assert.Equal(c, want, got)
			}
		}, 90*time.Second, time.Second, "%s: every acknowledged sample is in the engine (%s of %s)", id, got, want)
	}
	t.Logf("%d samples of %d agencies acknowledged and read back through the engine", total(), agencies)

	// Exactly one incident per agency, after the rules process's death.
	time.Sleep(3 * time.Second) // a late duplicate would show by now
	for _, id := range ids {
		_, incs := incidents(t, q2.Addr, id+"-token", "")
		require.Len(t, incs, 1, "%s: one incident for its alarm", id)
		require.Equal(t, "ThanosE2EAlarm", incs[0].AlertName)
	}

	// Rule outputs went through the engine and back for every agency.
	for _, id := range ids {
		v := query(t, q2.Addr, id+"-token", `e2e:thanos_seq:max`)
		require.Len(t, v, 1, "%s: its rule output, read from the engine", id)
	}

	// No agency reads another's tenant.
	for i, id := range ids {
		other := ids[(i+1)%agencies]
		tok := id + "-token"
		v := query(t, q2.Addr, tok, `count by (agency) ({__name__=~"e2e_.+"})`)
		require.Len(t, v, 1, id)
		require.Equal(t, id, v[0].Metric["agency"])
		require.Empty(t, query(t, q2.Addr, tok, `e2e_thanos{agency="`+other+`"}`), id)
		require.Empty(t, query(t, q2.Addr, tok, `{tenant_id="`+other+`"}`), "%s: the engine's tenant label", id)
		require.Empty(t, query(t, q2.Addr, tok, `{tenant_id="`+id+`"}`), "%s: the engine's tenant label is not Samdrift's", id)
		for label, want := range map[string]string{"agency": `["` + id + `"]`, "tenant_id": `[]`} {
			code, pr := api(t, q2.Addr, tok, "/label/"+label+"/values", nil)
			require.Equal(t, http.StatusOK, code)
			require.JSONEq(t, want, string(pr.Data), "%s: values of %s", id, label)
		}
		// A forged tenant header changes nothing: Samdrift sets it.
		r, err := client(q2.Addr, tok).Do(http.MethodGet, "/prometheus/api/v1/query?query=count+by+(agency)+(e2e_thanos)", "", nil, "THANOS-TENANT", other)
		require.NoError(t, err)
		var env promResponse
		require.NoError(t, json.Unmarshal([]byte(r.Body), &env))
		require.Contains(t, string(env.Data), `"agency":"`+id+`"`)
		require.NotContains(t, string(env.Data), other)
	}
	// Ops read every agency from the engine.
	v := query(t, q2.Addr, opsToken, `count(count by (agency) (e2e_thanos))`)
	require.Len(t, v, 1)
	require.Equal(t, strconv.Itoa(agencies), v[0].Value[1])
}
