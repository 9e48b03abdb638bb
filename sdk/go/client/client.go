// Package client starts sagas, waits for them and signals them through
// sagad's HTTP API (docs/API.md), with nothing but Go's standard library.
//
//	c := client.New("http://127.0.0.1:9464", os.Getenv("SAGA_API_TOKEN"))
//	s, err := c.Start(ctx, "order", input, client.StartOptions{BusinessKey: "order-4711"})
//	s, err = c.Wait(ctx, s.ID, time.Minute)
//	_, err = c.Signal(ctx, s.ID, "approval", client.SignalOptions{Payload: map[string]any{"ok": true}})
package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// Step is one step of a saga as the API shows it.
type Step struct {
	Index      int             `json:"index"`
	Name       string          `json:"name"`
	Status     string          `json:"status"`
	Attempts   int             `json:"attempts"`
	Output     json.RawMessage `json:"output"`
	Error      json.RawMessage `json:"error"`
	StartedAt  *time.Time      `json:"started_at"`
	FinishedAt *time.Time      `json:"finished_at"`
}

// Saga is what GET /v1/sagas/{id} answers.
type Saga struct {
	ID          string          `json:"id"`
	Name        string          `json:"name"`
	Version     int             `json:"version"`
	Status      string          `json:"status"`
	BusinessKey string          `json:"business_key"`
	Input       json.RawMessage `json:"input"`
	TraceID     string          `json:"trace_id"`
	Steps       []Step          `json:"steps"`
}

// Running tells whether the saga may still change by itself.
func (s *Saga) Running() bool {
	return s.Status == "pending" || s.Status == "running" || s.Status == "compensating"
}

// Problem is an error answer (application/problem+json, RFC 9457).
type Problem struct {
	Status int    `json:"status"`
	Code   string `json:"code"`
	Title  string `json:"title"`
	Detail string `json:"detail"`
}

func (p *Problem) Error() string { return fmt.Sprintf("HTTP %d %s: %s", p.Status, p.Code, p.Detail) }

// Client calls the API with a bearer token. Its zero Attempts and Backoff
// mean 5 and 200 ms.
type Client struct {
	BaseURL, Token string
	HTTP           *http.Client  // default http.DefaultClient
	Attempts       int           // tries of one request, retries included
	Backoff        time.Duration // before the first retry, doubled after each
}

// New gives a client of the API at baseURL with token ("" for none).
func New(baseURL, token string) *Client { return &Client{BaseURL: baseURL, Token: token} }

// StartOptions are a start's optional parts.
type StartOptions struct {
	BusinessKey string // your name for the saga (1-200 bytes), findable with Find
	// IdempotencyKey makes a retry safe: the same key gives the same saga
	// back. Default: the business key, else a random one (so the client's
	// own retries of this call still never start two sagas).
	IdempotencyKey string
	Traceparent    string // W3C traceparent of the caller's trace
}

// call makes one request, retried on 409, 503 and connection errors with
// exponential backoff and the same headers (so the same Idempotency-Key),
// at most Attempts times, and decodes a 2xx answer into out.
func (c *Client) call(ctx context.Context, method, path string, body any, hdr map[string]string,
	timeout time.Duration, out any) error {
	return c.callRetrying(ctx, method, path, body, hdr, timeout, out, http.StatusConflict)
}

// callRetrying is call retrying 503, connection errors and the status
// also (0: none more).
func (c *Client) callRetrying(ctx context.Context, method, path string, body any, hdr map[string]string,
	timeout time.Duration, out any, also int) error {
	var data []byte
	if body != nil {
		var err error
		if data, err = json.Marshal(body); err != nil {
			return err
		}
	}
	attempts, delay := c.Attempts, c.Backoff
	if attempts <= 0 {
		attempts = 5
	}
	if delay <= 0 {
		delay = 200 * time.Millisecond
	}
	var last error
	for attempt := 1; attempt <= attempts; attempt, delay = attempt+1, delay*2 {
		if attempt > 1 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(delay):
			}
		}
		status, raw, err := c.once(ctx, method, path, data, hdr, timeout)
		switch {
		case err != nil && ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			last = fmt.Errorf("%s %s: %w", method, path, err)
		case status >= 300:
			p := &Problem{Status: status, Code: "?", Detail: string(raw)}
			_ = json.Unmarshal(raw, p) // a problem document, or the raw answer
			p.Status = status
			if status != http.StatusServiceUnavailable && (also == 0 || status != also) {
				return p
			}
			last = p
		default:
			if err := json.Unmarshal(raw, out); err != nil {
				return fmt.Errorf("%s %s: an answer that is not JSON: %w", method, path, err)
			}
			return nil
		}
	}
	return fmt.Errorf("after %d attempts: %w", attempts, last)
}

func (c *Client) once(ctx context.Context, method, path string, data []byte, hdr map[string]string,
	timeout time.Duration) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, bytes.NewReader(data))
	if err != nil {
		return 0, nil, err
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	req.Header.Set("Accept", "application/json")
	if data != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	res, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(res.Body, 16<<20))
	return res.StatusCode, raw, err
}

// Start starts a saga of definition with input (any JSON object; nil:
// {}): POST /v1/sagas. The same idempotency key gives back the saga it
// started.
func (c *Client) Start(ctx context.Context, definition string, input any, o StartOptions) (*Saga, error) {
	key := o.IdempotencyKey
	if key == "" {
		key = o.BusinessKey
	}
	if key == "" {
		b := make([]byte, 16)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		key = hex.EncodeToString(b)
	}
	body := map[string]any{"definition": definition}
	if input != nil {
		body["input"] = input
	}
	if o.BusinessKey != "" {
		body["business_key"] = o.BusinessKey
	}
	hdr := map[string]string{"Idempotency-Key": key}
	if o.Traceparent != "" {
		hdr["traceparent"] = o.Traceparent
	}
	var s Saga
	if err := c.call(ctx, http.MethodPost, "/v1/sagas", body, hdr, 10*time.Second, &s); err != nil {
		return nil, err
	}
	if s.ID == "" {
		return nil, errors.New("start: an answer without an id")
	}
	return &s, nil
}

// Get gives the saga as it is now: GET /v1/sagas/{id}.
func (c *Client) Get(ctx context.Context, id string) (*Saga, error) {
	var s Saga
	err := c.call(ctx, http.MethodGet, "/v1/sagas/"+url.PathEscape(id), nil, nil, 10*time.Second, &s)
	return &s, err
}

// Wait long-polls (GET /v1/sagas/{id}?wait=, at most 30 s a request)
// until the saga has ended, and gives it; or, after timeout, gives it as
// it is then (check Running). It asks at most twice a second.
func (c *Client) Wait(ctx context.Context, id string, timeout time.Duration) (*Saga, error) {
	deadline := time.Now().Add(timeout)
	for {
		asked := time.Now()
		left := time.Until(deadline).Round(time.Second)
		if left < time.Second {
			left = time.Second
		} else if left > 30*time.Second {
			left = 30 * time.Second
		}
		var s Saga
		path := fmt.Sprintf("/v1/sagas/%s?wait=%ds", url.PathEscape(id), int(left.Seconds()))
		if err := c.call(ctx, http.MethodGet, path, nil, nil, left+10*time.Second, &s); err != nil {
			return nil, err
		}
		if !s.Running() || time.Now().After(deadline) {
			return &s, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Until(asked.Add(500 * time.Millisecond))):
		}
	}
}

// Find gives the sagas (that the token may see) with this business key:
// GET /v1/sagas?business_key=.
func (c *Client) Find(ctx context.Context, businessKey string) ([]Saga, error) {
	var page struct {
		Sagas []Saga `json:"sagas"`
	}
	err := c.call(ctx, http.MethodGet, "/v1/sagas?"+url.Values{"business_key": {businessKey}}.Encode(),
		nil, nil, 10*time.Second, &page)
	return page.Sagas, err
}

// SignalOptions are a signal's optional parts.
type SignalOptions struct {
	// Payload becomes the wait step's output: a JSON object (a struct, a
	// map, json.RawMessage); nil sends none.
	Payload any
	// ID makes a resend harmless: a signal with an id sent before is
	// absorbed (Duplicate). Default: a random one, so that the client's own
	// retries (a 503, a connection error) never deliver it twice; give
	// your own to make your caller's retries safe too (1-200 bytes).
	ID string
	// Failed sends the verdict "failed": the step fails and the saga is
	// compensated. Reason is then required (it becomes the step's error).
	Failed bool
	Reason string
}

// SignalResult is what a signal was answered.
type SignalResult struct {
	SagaID    string `json:"saga_id"`
	Name      string `json:"name"`
	ID        string `json:"id"`
	Duplicate bool   `json:"duplicate"` // this id had been sent before: absorbed
}

// Signal sends the signal name to the saga's wait step (kept until the
// saga waits for it): POST /v1/sagas/{id}/signals/{name}. 202 and 200 (a
// duplicate id) are success; a saga that is not running refuses it (a
// *Problem with Status 409, Code "refused"), no such saga is a 404, a
// bad payload, id, verdict or reason a 422. A 503 and connection errors
// are retried with the same id.
func (c *Client) Signal(ctx context.Context, sagaID, name string, o SignalOptions) (*SignalResult, error) {
	body := map[string]any{}
	if o.Payload != nil {
		body["payload"] = o.Payload
	}
	id := o.ID
	if id == "" {
		b := make([]byte, 16)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		id = "go-" + hex.EncodeToString(b)
	}
	body["id"] = id
	if o.Failed {
		body["verdict"] = "failed"
	}
	if o.Reason != "" {
		body["reason"] = o.Reason
	}
	r := SignalResult{SagaID: sagaID, Name: name}
	path := "/v1/sagas/" + url.PathEscape(sagaID) + "/signals/" + url.PathEscape(name)
	if err := c.callRetrying(ctx, http.MethodPost, path, body, nil, 10*time.Second, &r, 0); err != nil {
		return nil, err
	}
	if r.ID == "" {
		r.ID = id
	}
	return &r, nil
}
