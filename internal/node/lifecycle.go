package node

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/samdrift/samdrift/catalogue"
	"github.com/samdrift/samdrift/internal/httpapi"
)

// Stop order. oklog/run interrupts actors one after another in the order
// they were added, and each interrupt here returns only once its component
// has stopped, so a component stops only after every one before it:
//
//  1. signals       SIGTERM/SIGINT end the group
//  2. http          intake refuses first: readiness turns false, the listener
//     closes, requests in flight finish (what they acknowledged
//     is durable on the bus)
//  3. collector     scrapes and probes stop
//  4. router        the batch it is routing finishes
//  5. rules         rule managers stop (they append to the stores)
//  6. ticketing     the incident engine and the deliveries stop
//  7. background    catalogue watcher, metering's last flush, incident series
//  8. store         consumers finish their batch, then the TSDBs close
//  9. bus           the connection drains, the embedded NATS server stops
//
// Startup is the reverse: setup runs in dependency order (bus, store,
// router, collector, rules, ticketing, HTTP) before any actor starts, and
// readiness turns true only when every component has flipped its probe.
const (
	stageSignals = iota
	stageHTTP
	stageCollector
	stageRouter
	stageRules
	stageTicketing
	stageBackground
	stageStore
	stageBus
)

// actor is one component's run loop and how to stop it.
type actor struct {
	stage int
	name  string
	// run blocks until ctx ends (or interrupt makes it return).
	run func(ctx context.Context) error
	// interrupt, if set, makes run return (default: cancel its ctx).
	interrupt func()
	// after runs once run has returned (close what the actor used).
	after func()
}

// actors collects the process's actors and adds them to a run group in
// stop order.
type actors struct {
	logger *slog.Logger
	list   []actor
}

func (as *actors) add(a actor) { as.list = append(as.list, a) }

// group returns a run group with every actor, in stop order (stable for
// actors of the same stage).
func (as *actors) group() *run.Group {
	sort.SliceStable(as.list, func(i, j int) bool { return as.list[i].stage < as.list[j].stage })
	var g run.Group
	for _, a := range as.list {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		g.Add(func() error {
			defer close(done)
			err := a.run(ctx)
			if err != nil {
				return fmt.Errorf("%s: %w", a.name, err)
			}
			return nil
		}, func(error) {
			start := time.Now()
			if a.interrupt != nil {
				a.interrupt()
			}
			cancel()
			<-done
			if a.after != nil {
				a.after()
			}
			as.logger.Info("component stopped", "component", a.name, "took", time.Since(start).Round(time.Millisecond))
		})
	}
	return &g
}

// prober is the process's readiness: every component registers, and flips
// its probe once it can do its work (its consumers exist, its stores are
// open). Like Thanos's pkg/prober, readiness turns false again at shutdown.
type prober struct {
	mu       sync.Mutex
	pending  map[string]bool
	stopping bool
	check    func() error // extra condition (the bus connection)
}

func newProber() *prober { return &prober{pending: map[string]bool{}} }

// register adds a component that is not ready until ready(name).
func (p *prober) register(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pending[name] = true
}

// ready flips a component's probe.
func (p *prober) ready(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.pending, name)
}

// shutdown makes the process not ready for good.
func (p *prober) shutdown() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopping = true
}

// err reports why the process is not ready, or nil.
func (p *prober) err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopping {
		return fmt.Errorf("shutting down")
	}
	if len(p.pending) > 0 {
		names := make([]string, 0, len(p.pending))
		for n := range p.pending {
			names = append(names, n)
		}
		slices.Sort(names)
		return fmt.Errorf("starting: waiting for %s", strings.Join(names, ", "))
	}
	if p.check != nil {
		return p.check()
	}
	return nil
}

func (p *prober) isReady() bool { return p.err() == nil }

func (p *prober) healthy(w http.ResponseWriter, _ *http.Request) {
	fmt.Fprintln(w, "Samdrift is Healthy.")
}

func (p *prober) readyHandler(w http.ResponseWriter, _ *http.Request) {
	if err := p.err(); err != nil {
		http.Error(w, "Samdrift is not ready: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "Samdrift is Ready.")
}

// reloader applies a new catalogue to one component.
type reloader struct {
	name  string
	apply func(*catalogue.Catalogue) error
}

// ReloadStatus is the outcome of the last reload, per reloader.
type ReloadStatus struct {
	Time       time.Time         `json:"time"`
	Successful bool              `json:"successful"`
	Errors     map[string]string `json:"errors,omitempty"` // reloader -> error
}

// reloaders are the named reloaders of a process, run in order on every
// reload; a failure is logged, counted per reloader and kept for the
// admin API, and the process's reload is unsuccessful.
type reloaders struct {
	logger  *slog.Logger
	success prometheus.Gauge
	last    prometheus.Gauge
	byName  *prometheus.GaugeVec

	mu     sync.Mutex
	list   []reloader
	status ReloadStatus
}

func newReloaders(logger *slog.Logger, reg prometheus.Registerer) *reloaders {
	r := &reloaders{
		logger: logger,
		success: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "samdrift_catalogue_last_reload_successful",
			Help: "Whether the last catalogue reload succeeded: the file was valid and every component applied it.",
		}),
		last: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "samdrift_catalogue_last_reload_success_timestamp_seconds",
			Help: "Timestamp of the last successful catalogue reload.",
		}),
		byName: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "samdrift_reloader_last_successful",
			Help: "Whether a component applied the last catalogue it was given.",
		}, []string{"reloader"}),
	}
	reg.MustRegister(r.success, r.last, r.byName)
	r.success.Set(1)
	r.last.SetToCurrentTime()
	r.status = ReloadStatus{Time: time.Now().UTC(), Successful: true}
	return r
}

func (r *reloaders) add(name string, apply func(*catalogue.Catalogue) error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.list = append(r.list, reloader{name, apply})
	r.byName.WithLabelValues(name).Set(1)
}

// applyOne runs one reloader with c (the collector, when the collector
// set changed), recording its outcome.
func (r *reloaders) applyOne(name string, c *catalogue.Catalogue) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rl := range r.list {
		if rl.name != name {
			continue
		}
		if err := rl.apply(c); err != nil {
			r.byName.WithLabelValues(name).Set(0)
			r.logger.Error("component did not apply the catalogue", "reloader", name, "err", err)
		} else {
			r.byName.WithLabelValues(name).Set(1)
		}
	}
}

// apply runs every reloader with c.
func (r *reloaders) apply(c *catalogue.Catalogue) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := ReloadStatus{Time: time.Now().UTC(), Successful: true}
	for _, rl := range r.list {
		if err := rl.apply(c); err != nil {
			if st.Errors == nil {
				st.Errors = map[string]string{}
			}
			st.Errors[rl.name] = err.Error()
			st.Successful = false
			r.byName.WithLabelValues(rl.name).Set(0)
			r.logger.Error("component did not apply the catalogue", "reloader", rl.name, "err", err)
			continue
		}
		r.byName.WithLabelValues(rl.name).Set(1)
	}
	r.finish(st)
}

// fail records a reload refused before any reloader ran (invalid file).
func (r *reloaders) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.finish(ReloadStatus{Time: time.Now().UTC(), Errors: map[string]string{"catalogue": err.Error()}})
}

func (r *reloaders) finish(st ReloadStatus) {
	r.status = st
	if st.Successful {
		r.success.Set(1)
		r.last.SetToCurrentTime()
	} else {
		r.success.Set(0)
	}
}

// statusHandler serves the last reload's outcome (admin API).
func (r *reloaders) statusHandler(w http.ResponseWriter, _ *http.Request) {
	r.mu.Lock()
	st := r.status
	r.mu.Unlock()
	httpapi.OK(w, st)
}
