package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"

	"github.com/samdrift/samdrift/catalogue"
	"github.com/samdrift/samdrift/ticketing"
	"github.com/samdrift/samdrift/ticketing/builtin"
	"github.com/samdrift/samdrift/ticketing/notify"
	"github.com/samdrift/samdrift/ticketing/remedy"
)

// RemedyPasswordEnv is catalogue.RemedyPasswordEnv.
const RemedyPasswordEnv = catalogue.RemedyPasswordEnv

// deliveries returns the ticket backends of the catalogue: the built-in
// store always (the record behind the API), and Remedy when configured,
// logged in once so that wrong credentials stop the start with a clear error.
func (n *Node) deliveries(ctx context.Context, cat *catalogue.Catalogue, incidents *builtin.Store, externalURL string, logger *slog.Logger) ([]ticketing.DeliveryOptions, func(), error) {
	var routes []ticketing.DeliveryOptions
	for _, rc := range cat.Notifications {
		r, err := notify.NewRoute(rc, externalURL)
		if err != nil {
			return nil, nil, err
		}
		recv := r.Receivers()
		names := make([]string, 0, len(recv))
		for name := range recv {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			routes = append(routes, ticketing.DeliveryOptions{Name: "notify-" + name, Backend: recv[name], Notifier: true})
		}
	}
	if cat.Ticketing.Backend != "remedy" {
		return append([]ticketing.DeliveryOptions{{Name: "builtin", Backend: incidents, Primary: true}}, routes...), func() {}, nil
	}
	r := cat.Ticketing.Remedy
	pw, err := catalogue.ReadSecret(RemedyPasswordEnv, r.PasswordFile, "remedy password")
	if err != nil {
		return nil, nil, err
	}
	c := remedy.New(remedy.Config{
		URL: r.URL, Username: r.Username, Password: pw, FirstName: r.FirstName, LastName: r.LastName,
		KeyField: r.KeyField, ExternalURL: externalURL, Logger: logger.With("component", "remedy"),
		MaxRequestsPerSecond: r.MaxRequestsPerSecond,
	})
	if err := c.Login(ctx); err != nil {
		var tmp *ticketing.TemporaryError
		if !errors.As(err, &tmp) {
			// Wrong credentials or URL: a configuration error, said at once.
			return nil, nil, fmt.Errorf("remedy at %s: %w", r.URL, err)
		}
		// Remedy unreachable or failing: start anyway. Intake must not
		// depend on the ticket system; deliveries wait in the outbox and
		// retry with backoff until it answers.
		logger.Warn("remedy unreachable at startup; incidents wait in the outbox until it answers", "url", r.URL, "err", err)
	}
	logout := func() { _ = c.Logout(context.Background()) }
	return append([]ticketing.DeliveryOptions{
		{Name: "builtin", Backend: incidents},
		{Name: "remedy", Backend: recordTicket{c, incidents}, Primary: true},
	}, routes...), logout, nil
}

// recordTicket notes the Remedy incident number in the built-in store.
type recordTicket struct {
	ticketing.Backend
	store *builtin.Store
}

func (r recordTicket) Deliver(ctx context.Context, inc *ticketing.Incident) (string, error) {
	ref, err := r.Backend.Deliver(ctx, inc)
	if err == nil && ref != "" && ref != inc.Ticket {
		_ = r.store.SetTicket(ctx, inc.Agency, inc.ID, ref)
	}
	return ref, err
}
