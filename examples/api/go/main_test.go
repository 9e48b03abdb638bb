package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// server answers each request with the next of answers (status, body) and
// records the requests' Idempotency-Key and body.
func server(t *testing.T, answers ...string) (*Client, *[]string) {
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		seen = append(seen, r.Header.Get("Idempotency-Key")+" "+string(body))
		a := answers[0]
		answers = answers[1:]
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(map[byte]int{'2': 201, '4': 422, '5': 503}[a[0]])
		_, _ = io.WriteString(w, a[1:])
	}))
	t.Cleanup(srv.Close)
	return &Client{BaseURL: srv.URL, Token: "sgt_test", Attempts: 3, Backoff: time.Millisecond}, &seen
}

func TestStartRetries503WithTheSameKey(t *testing.T) {
	c, seen := server(t, `5{"status":503,"code":"database_unavailable","detail":"down"}`, `2{"id":"s1"}`)
	s, err := c.Start(context.Background(), "order", map[string]any{"sku": "widget"}, "order-4711", "key-1")
	if err != nil || s.ID != "s1" {
		t.Fatalf("start: %v %v", s, err)
	}
	want := `key-1 {"business_key":"order-4711","definition":"order","input":{"sku":"widget"}}`
	if len(*seen) != 2 || (*seen)[0] != want || (*seen)[1] != want {
		t.Fatalf("requests: %q", *seen)
	}
}

func TestAProblemIsShownNotRetried(t *testing.T) {
	c, seen := server(t, `4{"status":422,"code":"unknown_definition","detail":"no definition \"ordr\" is deployed"}`)
	_, err := c.Start(context.Background(), "ordr", nil, "k", "k")
	var p *Problem
	if !errors.As(err, &p) || err.Error() != `HTTP 422 unknown_definition: no definition "ordr" is deployed` || len(*seen) != 1 {
		t.Fatalf("got %v after %d requests", err, len(*seen))
	}
}
