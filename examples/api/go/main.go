// Command sagaapi starts sagas and waits for their end over sagad's HTTP API
// (docs/API.md), with nothing but Go's standard library.
//
//	SAGA_API_URL=http://127.0.0.1:9464 SAGA_API_TOKEN=sgt_... go run . 3
//
// starts 3 "order" sagas (the demo's data: examples/seed.sql), waits for
// each, prints "ID BUSINESS_KEY STATUS" per saga, then finds the first by its
// business key. Exits 1 on any unexpected answer.
package main

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
	"os"
	"strconv"
	"time"
)

// Saga is what GET /v1/sagas/{id} answers (the fields used here).
type Saga struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Status      string `json:"status"`
	BusinessKey string `json:"business_key"`
	Steps       []struct {
		Name   string `json:"name"`
		Status string `json:"status"`
	} `json:"steps"`
}

// Running tells whether the saga may still change.
func (s *Saga) Running() bool {
	return s.Status == "pending" || s.Status == "running" || s.Status == "compensating"
}

// Problem is an error answer (application/problem+json).
type Problem struct {
	Status int    `json:"status"`
	Code   string `json:"code"`
	Detail string `json:"detail"`
}

func (p *Problem) Error() string { return fmt.Sprintf("HTTP %d %s: %s", p.Status, p.Code, p.Detail) }

// Client calls the API with a bearer token.
type Client struct {
	BaseURL, Token string
	Attempts       int           // tries of one request, retries included
	Backoff        time.Duration // before the first retry, doubled after each
}

// call makes one request, retried on 409/503 and connection errors with
// exponential backoff and the same headers (so the same Idempotency-Key),
// and decodes a 2xx answer into out.
func (c *Client) call(ctx context.Context, method, path string, body any, hdr map[string]string,
	timeout time.Duration, out any) (int, error) {
	var data []byte
	if body != nil {
		var err error
		if data, err = json.Marshal(body); err != nil {
			return 0, err
		}
	}
	var last error
	for attempt, delay := 1, c.Backoff; attempt <= c.Attempts; attempt, delay = attempt+1, delay*2 {
		if attempt > 1 {
			select {
			case <-ctx.Done():
				return 0, ctx.Err()
			case <-time.After(delay):
			}
		}
		status, raw, err := c.once(ctx, method, path, data, hdr, timeout)
		switch {
		case err != nil && ctx.Err() != nil:
			return 0, ctx.Err()
		case err != nil:
			last = fmt.Errorf("%s %s: %w", method, path, err)
		case status >= 300:
			p := &Problem{Status: status, Code: "?", Detail: string(raw)}
			_ = json.Unmarshal(raw, p) // a problem document, or the raw answer
			if status != http.StatusServiceUnavailable && status != http.StatusConflict {
				return status, p
			}
			last = p
		default:
			return status, json.Unmarshal(raw, out)
		}
	}
	return 0, last
}

func (c *Client) once(ctx context.Context, method, path string, data []byte, hdr map[string]string,
	timeout time.Duration) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, bytes.NewReader(data))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	req.Header.Set("Accept", "application/json")
	if data != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	return res.StatusCode, raw, err
}

// Start starts a saga (201), or gives back the one this key started (200).
func (c *Client) Start(ctx context.Context, definition string, input any, businessKey, idempotencyKey string) (*Saga, error) {
	var s Saga
	body := map[string]any{"definition": definition, "input": input, "business_key": businessKey}
	_, err := c.call(ctx, http.MethodPost, "/v1/sagas", body,
		map[string]string{"Idempotency-Key": idempotencyKey}, 10*time.Second, &s)
	if err == nil && s.ID == "" {
		err = errors.New("start: an answer without an id")
	}
	return &s, err
}

// Wait long-polls until the saga has ended, or gives it as it is after timeout.
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
		if _, err := c.call(ctx, http.MethodGet, path, nil, nil, left+10*time.Second, &s); err != nil {
			return nil, err
		}
		if !s.Running() || time.Now().After(deadline) {
			return &s, nil
		}
		time.Sleep(time.Until(asked.Add(500 * time.Millisecond))) // never more than 2/s
	}
}

// FindByBusinessKey gives the sagas (the caller may see) with this business key.
func (c *Client) FindByBusinessKey(ctx context.Context, key string) ([]Saga, error) {
	var page struct {
		Sagas []Saga `json:"sagas"`
	}
	_, err := c.call(ctx, http.MethodGet, "/v1/sagas?"+url.Values{"business_key": {key}}.Encode(),
		nil, nil, 10*time.Second, &page)
	return page.Sagas, err
}

func run(ctx context.Context, c *Client, count int) error {
	order := map[string]any{"customer_id": "alice", "sku": "widget", "quantity": 1, "amount": 100}
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		return err
	}
	var keys, ids []string
	for i := 0; i < count; i++ {
		key := fmt.Sprintf("order-go-%s-%d", hex.EncodeToString(b), i) // business and retry key
		s, err := c.Start(ctx, "order", order, key, key)
		if err != nil {
			return err
		}
		keys, ids = append(keys, key), append(ids, s.ID)
	}
	if again, err := c.Start(ctx, "order", order, keys[0], keys[0]); err != nil || again.ID != ids[0] {
		return fmt.Errorf("a retry of %s: %v %v", keys[0], again.ID, err)
	}
	var bad error
	for i, id := range ids {
		s, err := c.Wait(ctx, id, time.Minute)
		if err != nil {
			return err
		}
		fmt.Println(s.ID, s.BusinessKey, s.Status)
		if s.Status != "completed" || s.BusinessKey != keys[i] {
			bad = fmt.Errorf("saga %s: %s, business key %q", id, s.Status, s.BusinessKey)
		}
	}
	found, err := c.FindByBusinessKey(ctx, keys[0])
	if err != nil {
		return err
	}
	fmt.Printf("business key %s:", keys[0])
	for _, s := range found {
		fmt.Printf(" %s", s.ID)
	}
	fmt.Println()
	if len(found) != 1 || found[0].ID != ids[0] {
		return fmt.Errorf("business key %s finds %d sagas", keys[0], len(found))
	}
	return bad
}

func main() {
	count := 3
	if len(os.Args) > 1 {
		n, err := strconv.Atoi(os.Args[1])
		if err != nil || n < 1 {
			fmt.Fprintln(os.Stderr, "usage: sagaapi [COUNT]")
			os.Exit(2)
		}
		count = n
	}
	c := &Client{BaseURL: os.Getenv("SAGA_API_URL"), Token: os.Getenv("SAGA_API_TOKEN"),
		Attempts: 6, Backoff: 200 * time.Millisecond}
	if err := run(context.Background(), c, count); err != nil {
		fmt.Fprintln(os.Stderr, "sagaapi:", err)
		os.Exit(1)
	}
}
