package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/samdrift/samdrift/catalogue"
	"github.com/samdrift/samdrift/ticketing/remedy/remedysim"
)

func registerRemedySim(app *kingpin.Application, cmds map[string]func(*slog.Logger) int) {
	cmd := app.Command("remedy-sim", "Run the Remedy AR REST API simulator (for demos and tests), with the companies of a catalogue.")
	addr := cmd.Flag("addr", "Listen address.").Default("127.0.0.1:8008").String()
	file := cmd.Flag("config", "Agency catalogue whose Remedy companies the simulator knows.").String()
	companies := cmd.Flag("company", "A company the simulator knows (repeatable; added to the catalogue's).").Strings()
	user := cmd.Flag("username", "Login of the integration user.").Default("samdrift-integration").String()
	password := cmd.Flag("password", "Password of every simulated user (default: random, printed).").String()
	rateLimit := cmd.Flag("rate", "Requests per second before 429 (0: unlimited).").Default("0").Float64()
	latency := cmd.Flag("latency", "Time each request takes to answer (a real AR System server: about 100ms).").Default("0s").Duration()
	cmds[cmd.FullCommand()] = func(logger *slog.Logger) int {
		cs := *companies
		if *file != "" {
			c, err := catalogue.LoadFile(*file)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			cs = append(cs, remedysim.Companies(c)...)
		}
		if len(cs) == 0 {
			fmt.Fprintln(os.Stderr, "samdrift remedy-sim: give --config or --company")
			return 2
		}
		pw := *password
		if pw == "" {
			b := make([]byte, 8)
			_, _ = rand.Read(b)
			pw = hex.EncodeToString(b)
		}
		users := remedysim.UsersFor(cs, *user, pw)
		sim := remedysim.New(remedysim.Options{Users: users, Companies: cs, Rate: *rateLimit, Burst: int(max(*rateLimit, 1)), Latency: *latency})
		ln, err := net.Listen("tcp", *addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Printf("Remedy AR REST simulator on http://%s/api/arsys/v1\nLogin (POST /api/jwt/login): password %q for every user\n", ln.Addr(), pw)
		for _, u := range users {
			fmt.Printf("  %-28s companies: %s\n", u.Name, strings.Join(u.Companies, ", "))
		}
		srv := &http.Server{Handler: sim, ReadHeaderTimeout: 10 * time.Second}
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
		go func() { <-sig; _ = srv.Close() }()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("remedy-sim", "err", err)
			return 1
		}
		return 0
	}
}
