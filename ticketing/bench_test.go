package ticketing_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/samdrift/samdrift/bus"
	"github.com/samdrift/samdrift/catalogue"
	"github.com/samdrift/samdrift/ticketing"
)

// BenchmarkApply: the pure lifecycle step (dedup, update, escalate) for an
// alert re-sent to an open incident, the commonest case under a storm.
func BenchmarkApply(b *testing.B) {
	tg := ticketing.Target{Agency: "alpha", Service: "web", Tier: "high", Queue: ticketing.QueueAgency, Company: "ALPHA",
		Key: "alpha/web/X", StoredKey: "alpha.x", Policy: ticketing.DefaultPolicy}
	start := time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)
	a := bus.Alert{Labels: map[string]string{"alertname": "X", "agency": "alpha", "service": "web", "severity": "critical", "instance": "1"}, StartsAt: start}
	inc, _ := ticketing.Apply(nil, a, tg, start)
	now := start
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(time.Second)
		inc, _ = ticketing.Apply(inc, a, tg, now)
	}
}

// BenchmarkProcess: alerts through the engine on the embedded JetStream
// (incident state read, compare-and-set, delivery enqueued), each a new
// key, so every operation creates an incident.
func BenchmarkProcess(b *testing.B) {
	ctx := context.Background()
	bs, err := bus.Open(ctx, bus.Options{DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer bs.Close()
	cat, err := catalogue.Parse([]byte("provider: {name: P}\nagencies:\n  - {id: alpha, name: Alpha, phase: run, services: [{id: web, name: W, tier: high}]}\n"), "c.yaml")
	if err != nil {
		b.Fatal(err)
	}
	e, err := ticketing.New(ctx, ticketing.Options{Bus: bs, Catalogue: catalogue.NewHolder(cat)})
	if err != nil {
		b.Fatal(err)
	}
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		i++
		a := bus.Alert{Labels: map[string]string{"alertname": fmt.Sprintf("Bench%d", i), "agency": "alpha", "service": "web", "severity": "critical"}, StartsAt: time.Now()}
		if err := e.Process(ctx, "alpha", []bus.Alert{a}); err != nil {
			b.Fatal(err)
		}
	}
}
