// Package apiclient is the command line's client of a running Samdrift's
// API: bearer token, timeouts on every request (a hung server cannot hang a
// command), and the API's JSON envelope decoded, its errors worded for
// people.
package apiclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// Timeouts of a request: connecting, and the whole exchange.
const (
	DialTimeout    = 10 * time.Second
	RequestTimeout = 2 * time.Minute
)

// Client reaches one Samdrift with one token.
type Client struct {
	Base  string
	Token string
	HTTP  *http.Client
}

// New returns a client of the Samdrift at base (http://host:port).
func New(base, token string) *Client {
	return &Client{Base: strings.TrimSuffix(base, "/"), Token: token, HTTP: &http.Client{
		Timeout: RequestTimeout,
		Transport: &http.Transport{
			DialContext:           (&net.Dialer{Timeout: DialTimeout}).DialContext,
			TLSHandshakeTimeout:   DialTimeout,
			ResponseHeaderTimeout: RequestTimeout,
		},
	}}
}

// Error is an error answer of the API.
type Error struct {
	Method, Path string
	Status       int
	Type, Msg    string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s %s: %d %s", e.Method, e.Path, e.Status, e.Msg)
}

// Do sends a request and returns the response of a 2xx answer (the caller
// closes its body); any other answer is an *Error.
func (c *Client) Do(ctx context.Context, method, path string, body io.Reader, header ...string) (*http.Response, error) {
	if c.Token == "" {
		return nil, errors.New("need --token (or SAMDRIFT_TOKEN): a credential of the running Samdrift")
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 8192))
		e := &Error{Method: method, Path: path, Status: resp.StatusCode, Msg: strings.TrimSpace(string(b))}
		var env struct {
			ErrorType string `json:"errorType"`
			Error     string `json:"error"`
		}
		if json.Unmarshal(b, &env) == nil && env.Error != "" {
			e.Type, e.Msg = env.ErrorType, env.Error
		}
		return nil, e
	}
	return resp, nil
}

// JSON sends a request and decodes the data of a {"status":"success",
// "data":…} answer into v (nil: ignore it).
func (c *Client) JSON(ctx context.Context, method, path string, body io.Reader, v any) error {
	resp, err := c.Do(ctx, method, path, body, "Content-Type", "application/json")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if v == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	var env struct {
		Data any `json:"data"`
	}
	env.Data = v
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
		return fmt.Errorf("%s %s: answer not understood: %w", method, path, err)
	}
	return nil
}

// Get is JSON with GET.
func (c *Client) Get(ctx context.Context, path string, v any) error {
	return c.JSON(ctx, http.MethodGet, path, nil, v)
}

// WaitAccepted polls until the Samdrift accepts the client's token (a new
// credential, once the catalogue is reloaded), or timeout passes.
func (c *Client) WaitAccepted(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
		resp, err := c.Do(rctx, http.MethodGet, "/prometheus/api/v1/labels", nil)
		rcancel()
		if err == nil {
			resp.Body.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s did not accept the credential within %s (is it running on this catalogue?)", c.Base, timeout)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
