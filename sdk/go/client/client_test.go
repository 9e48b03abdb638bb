package client

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

func TestStartRetriesWithTheSameKey(t *testing.T) {
	var calls atomic.Int32
	var keys []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		keys = append(keys, r.Header.Get("Idempotency-Key"))
		if r.Header.Get("Authorization") != "Bearer tok" {
			t.Errorf("Authorization %q", r.Header.Get("Authorization"))
		}
		if calls.Add(1) == 1 {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(503)
			w.Write([]byte(`{"status":503,"code":"database_unavailable","detail":"down"}`))
			return
		}
		var body map[string]any
		json.NewDecoder(r.Body).Decode(&body)
		if body["business_key"] != "order-1" || body["definition"] != "order" {
			t.Errorf("body %v", body)
		}
		w.WriteHeader(201)
		w.Write([]byte(`{"id":"5f0c2a8e-4d1b-4f6a-9c3e-2b7d8e9f0a1b","status":"pending","business_key":"order-1"}`))
	}))
	defer srv.Close()
	c := &Client{BaseURL: srv.URL, Token: "tok", Backoff: time.Millisecond}
	s, err := c.Start(context.Background(), "order", map[string]any{"amount": 1}, StartOptions{BusinessKey: "order-1"})
	if err != nil || s.ID == "" || !s.Running() {
		t.Fatalf("start: %+v %v", s, err)
	}
	if len(keys) != 2 || keys[0] != "order-1" || keys[1] != "order-1" {
		t.Fatalf("Idempotency-Key per try: %v", keys)
	}
}

func TestProblemNotRetried(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(422)
		w.Write([]byte(`{"status":422,"code":"unknown_definition","detail":"no definition \"x\""}`))
	}))
	defer srv.Close()
	_, err := New(srv.URL, "").Start(context.Background(), "x", nil, StartOptions{})
	var p *Problem
	if !errors.As(err, &p) || p.Status != 422 || p.Code != "unknown_definition" || calls.Load() != 1 {
		t.Fatalf("%v (%d calls)", err, calls.Load())
	}
}

func TestWaitLongPolls(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("wait") == "" {
			t.Errorf("no wait= in %s", r.URL)
		}
		status := "running"
		if calls.Add(1) == 3 {
			status = "completed"
		}
		json.NewEncoder(w).Encode(map[string]any{"id": "a", "status": status})
	}))
	defer srv.Close()
	s, err := New(srv.URL, "").Wait(context.Background(), "a", time.Minute)
	if err != nil || s.Status != "completed" || calls.Load() != 3 {
		t.Fatalf("%+v %v %d", s, err, calls.Load())
	}
	srv2 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"sagas":[{"id":"a","business_key":"k"}]}`))
	}))
	defer srv2.Close()
	found, err := New(srv2.URL, "").Find(context.Background(), "k")
	if err != nil || len(found) != 1 || found[0].ID != "a" {
		t.Fatalf("find: %v %v", found, err)
	}
}
