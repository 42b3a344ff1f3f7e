// Package testutil holds test servers shared by several packages' tests.
package testutil

import (
	"bufio"
	"net"
	"strings"
	"sync"
)

// Mail is one message an SMTPServer received.
type Mail struct {
	From string
	To   []string
	Data string
}

// SMTPServer is a minimal SMTP server (RFC 5321 subset, no TLS, no auth)
// that keeps what it receives, for tests of mail notifications.
type SMTPServer struct {
	ln   net.Listener
	mu   sync.Mutex
	mail []Mail
}

// NewSMTPServer listens on a loopback port.
func NewSMTPServer() (*SMTPServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &SMTPServer{ln: ln}
	go s.serve()
	return s, nil
}

// Addr is the server's host:port.
func (s *SMTPServer) Addr() string { return s.ln.Addr().String() }

// Close stops the server.
func (s *SMTPServer) Close() error { return s.ln.Close() }

// Mail returns the messages received so far.
func (s *SMTPServer) Mail() []Mail {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Mail(nil), s.mail...)
}

func (s *SMTPServer) serve() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		go s.session(c)
	}
}

func (s *SMTPServer) session(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	w := bufio.NewWriter(c)
	reply := func(line string) {
		_, _ = w.WriteString(line + "\r\n")
		_ = w.Flush()
	}
	reply("220 test ESMTP")
	var m Mail
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		cmd := strings.ToUpper(strings.TrimSpace(line))
		switch {
		case strings.HasPrefix(cmd, "EHLO"), strings.HasPrefix(cmd, "HELO"):
			reply("250 test")
		case strings.HasPrefix(cmd, "MAIL FROM:"):
			m = Mail{From: strings.Trim(strings.TrimSpace(line)[10:], "<> ")}
			reply("250 OK")
		case strings.HasPrefix(cmd, "RCPT TO:"):
			m.To = append(m.To, strings.Trim(strings.TrimSpace(line)[8:], "<> "))
			reply("250 OK")
		case cmd == "DATA":
			reply("354 end with .")
			var b strings.Builder
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if strings.TrimRight(l, "\r\n") == "." {
					break
				}
				b.WriteString(l)
			}
			m.Data = b.String()
			s.mu.Lock()
			s.mail = append(s.mail, m)
			s.mu.Unlock()
			reply("250 queued")
		case cmd == "QUIT":
			reply("221 bye")
			return
		default:
			reply("250 OK")
		}
	}
}
