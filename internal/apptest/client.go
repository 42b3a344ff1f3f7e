package apptest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
)

// Client talks to samdrift's HTTP API with a token.
type Client struct {
	// Base is http://host:port.
	Base  string
	Token string
	HTTP  *http.Client
}

// NewClient returns a client of the samdrift at addr (host:port).
func NewClient(addr, token string) Client {
	return Client{Base: "http://" + addr, Token: token, HTTP: &http.Client{Timeout: 2 * time.Minute}}
}

// As returns the client with another token.
func (c Client) As(token string) Client {
	c.Token = token
	return c
}

// Response is an HTTP answer.
type Response struct {
	Status     int
	Body       string
	Header     http.Header
	RetryAfter string
	Took       time.Duration
}

// Do sends a request (body and content type optional).
func (c Client) Do(method, path, contentType string, body []byte, header ...string) (Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, c.Base+path, rd)
	if err != nil {
		return Response{}, err
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	start := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		return Response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return Response{}, err
	}
	return Response{Status: resp.StatusCode, Body: string(b), Header: resp.Header, RetryAfter: resp.Header.Get("Retry-After"), Took: time.Since(start)}, nil
}

// Get is Do with GET.
func (c Client) Get(path string) (Response, error) { return c.Do(http.MethodGet, path, "", nil) }

// PromResponse is the API envelope.
type PromResponse struct {
	Status    string          `json:"status"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
	Data      json.RawMessage `json:"data"`
}

// Sample is one element of an instant vector.
type Sample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// Float is the sample's value.
func (s Sample) Float() float64 {
	v, _ := s.Value[1].(string)
	var f float64
	_, _ = fmt.Sscan(v, &f)
	return f
}

// API calls the query API (/prometheus/api/v1<path>) and decodes the
// envelope.
func (c Client) API(path string, params url.Values) (int, PromResponse, error) {
	r, err := c.Get("/prometheus/api/v1" + path + "?" + params.Encode())
	if err != nil {
		return 0, PromResponse{}, err
	}
	var pr PromResponse
	if err := json.Unmarshal([]byte(r.Body), &pr); err != nil {
		return r.Status, pr, fmt.Errorf("%s: %d %s", path, r.Status, r.Body)
	}
	return r.Status, pr, nil
}

// Query runs an instant query and returns the vector.
func (c Client) Query(q string) ([]Sample, error) {
	code, pr, err := c.API("/query", url.Values{"query": {q}})
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("query %s: %d %s: %s", q, code, pr.ErrorType, pr.Error)
	}
	var data struct {
		Result []Sample `json:"result"`
	}
	if err := json.Unmarshal(pr.Data, &data); err != nil {
		return nil, err
	}
	return data.Result, nil
}

// Incident is an incident as the API shows it.
type Incident struct {
	ID           string                  `json:"id"`
	Key          string                  `json:"key"`
	Agency       string                  `json:"agency"`
	Service      string                  `json:"service"`
	AlertName    string                  `json:"alertname"`
	State        string                  `json:"state"`
	Queue        string                  `json:"queue"`
	Company      string                  `json:"company"`
	Priority     string                  `json:"priority"`
	Ticket       string                  `json:"ticket"`
	Count        int                     `json:"count"`
	Acknowledged bool                    `json:"acknowledged"`
	Assignee     string                  `json:"assignee"`
	WorkLog      []struct{ Text string } `json:"work_log"`
	Notes        []struct{ Text string } `json:"notes"`
	OpenedAt     time.Time               `json:"opened_at"`
	Explains     []string                `json:"explains"`
	ExplainedBy  string                  `json:"explained_by"`
}

// Incidents lists the incidents visible to the client's token matching
// query (url-encoded parameters), following every page.
func (c Client) Incidents(query string) ([]Incident, error) {
	var out []Incident
	cursor := ""
	for {
		q := query
		if cursor != "" {
			q = strings.TrimPrefix(q+"&cursor="+url.QueryEscape(cursor), "&")
		}
		if !strings.Contains(q, "limit=") {
			q = strings.TrimPrefix(q+"&limit=1000", "&")
		}
		r, err := c.Get("/api/v1/incidents?" + q)
		if err != nil {
			return nil, err
		}
		if r.Status != http.StatusOK {
			return nil, fmt.Errorf("incidents: %d %s", r.Status, r.Body)
		}
		var env struct {
			Data struct {
				Incidents []Incident `json:"incidents"`
				Next      string     `json:"next"`
			} `json:"data"`
		}
		if err := json.Unmarshal([]byte(r.Body), &env); err != nil {
			return nil, fmt.Errorf("incidents: %w: %s", err, r.Body)
		}
		out = append(out, env.Data.Incidents...)
		if env.Data.Next == "" {
			return out, nil
		}
		cursor = env.Data.Next
	}
}

// RemoteWrite encodes series as a remote-write 1.0 body.
func RemoteWrite(series ...prompb.TimeSeries) ([]byte, error) {
	raw, err := (&prompb.WriteRequest{Timeseries: series}).Marshal()
	if err != nil {
		return nil, err
	}
	return snappy.Encode(nil, raw), nil
}

// Push remote-writes series (1.0).
func (c Client) Push(series ...prompb.TimeSeries) (Response, error) {
	body, err := RemoteWrite(series...)
	if err != nil {
		return Response{}, err
	}
	return c.PushBody(body)
}

// PushBody posts an encoded remote-write 1.0 body.
func (c Client) PushBody(body []byte) (Response, error) {
	return c.Do(http.MethodPost, "/api/v1/push", "application/x-protobuf", body, "Content-Encoding", "snappy", "X-Prometheus-Remote-Write-Version", "0.1.0")
}

// PostAlerts posts an Alertmanager webhook payload.
func (c Client) PostAlerts(body []byte) (Response, error) {
	return c.Do(http.MethodPost, "/api/v1/alerts", "application/json", body)
}

// Webhook makes an Alertmanager webhook (v4) payload of alerts with the
// given labels, all with one status and start.
func Webhook(status string, startsAt time.Time, alerts ...map[string]string) []byte {
	type wa struct {
		Status      string            `json:"status"`
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
		StartsAt    time.Time         `json:"startsAt"`
		EndsAt      time.Time         `json:"endsAt"`
	}
	as := make([]wa, 0, len(alerts))
	for _, l := range alerts {
		a := wa{Status: status, Labels: l, Annotations: map[string]string{"summary": l["alertname"] + " fired"}, StartsAt: startsAt}
		if status == "resolved" {
			a.EndsAt = time.Now()
		}
		as = append(as, a)
	}
	b, _ := json.Marshal(map[string]any{"version": "4", "status": status, "receiver": "samdrift", "groupKey": "{}:{}", "alerts": as})
	return b
}

// Metrics reads /metrics (the client's token must be ops or admin).
func (c Client) Metrics() (string, error) {
	r, err := c.Get("/metrics")
	if err != nil {
		return "", err
	}
	if r.Status != http.StatusOK {
		return "", fmt.Errorf("/metrics: %d %s", r.Status, r.Body)
	}
	return r.Body, nil
}

// MetricSum sums a metric's samples over its series on a /metrics page.
func MetricSum(page, name string) float64 {
	sum := 0.0
	for _, l := range strings.Split(page, "\n") {
		if !strings.HasPrefix(l, name) || (len(l) > len(name) && l[len(name)] != '{' && l[len(name)] != ' ') {
			continue
		}
		f := strings.Fields(l)
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
			sum += v
		}
	}
	return sum
}

// Ready reports whether /-/ready answers 200.
func (c Client) Ready() bool {
	r, err := c.Get("/-/ready")
	return err == nil && r.Status == http.StatusOK
}
