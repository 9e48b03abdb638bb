package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
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

func TestSignal(t *testing.T) {
	type got struct {
		path string
		body map[string]any
	}
	var seen []got
	answers := []struct {
		status int
		body   string
	}{
		{202, `{"saga_id":"s1","name":"approval","id":"ann-1","duplicate":false}`},
		{200, `{"saga_id":"s1","name":"approval","id":"ann-1","duplicate":true}`},
		{503, `{"status":503,"code":"database_unavailable","detail":"down"}`},
		{202, `{"saga_id":"s1","name":"approval","id":null,"duplicate":false}`},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s with Content-Type %q", r.Method, r.Header.Get("Content-Type"))
		}
		var body map[string]any
		json.NewDecoder(r.Body).Decode(&body)
		seen = append(seen, got{r.URL.EscapedPath(), body})
		a := answers[len(seen)-1]
		w.WriteHeader(a.status)
		w.Write([]byte(a.body))
	}))
	defer srv.Close()
	c := &Client{BaseURL: srv.URL, Backoff: time.Millisecond}
	ctx := context.Background()
	r, err := c.Signal(ctx, "s1", "approval", SignalOptions{Payload: map[string]any{"approved": true}, ID: "ann-1"})
	if err != nil || r.Duplicate || r.ID != "ann-1" || r.SagaID != "s1" {
		t.Fatalf("signal: %+v %v", r, err)
	}
	if seen[0].path != "/v1/sagas/s1/signals/approval" || seen[0].body["id"] != "ann-1" ||
		seen[0].body["payload"].(map[string]any)["approved"] != true || len(seen[0].body) != 2 {
		t.Fatalf("sent %+v", seen[0])
	}
	if r, err = c.Signal(ctx, "s1", "approval", SignalOptions{ID: "ann-1"}); err != nil || !r.Duplicate {
		t.Fatalf("the same id again: %+v %v", r, err)
	}
	// No id: one of its own, the same on the retry of the 503.
	r, err = c.Signal(ctx, "s1", "approval", SignalOptions{Failed: true, Reason: "over budget"})
	if err != nil || len(seen) != 4 {
		t.Fatalf("failed verdict: %+v %v (%d requests)", r, err, len(seen))
	}
	id, _ := seen[2].body["id"].(string)
	if !strings.HasPrefix(id, "go-") || seen[3].body["id"] != id || r.ID != id ||
		seen[3].body["verdict"] != "failed" || seen[3].body["reason"] != "over budget" {
		t.Fatalf("sent %+v then %+v, answered %+v", seen[2], seen[3], r)
	}
	if _, has := seen[3].body["payload"]; has {
		t.Fatalf("a payload sent though none was given: %+v", seen[3])
	}
}

func TestSignalRefusalsNotRetried(t *testing.T) {
	for _, a := range []struct {
		status int
		code   string
	}{{409, "refused"}, {404, "not_found"}, {422, "invalid_field"}} {
		var calls atomic.Int32
		var path string
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			calls.Add(1)
			path = r.URL.EscapedPath()
			w.WriteHeader(a.status)
			fmt.Fprintf(w, `{"status":%d,"code":%q,"detail":"no"}`, a.status, a.code)
		}))
		_, err := (&Client{BaseURL: srv.URL, Backoff: time.Millisecond}).Signal(context.Background(),
			"s1", "bad name/x", SignalOptions{})
		srv.Close()
		var p *Problem
		if !errors.As(err, &p) || p.Status != a.status || p.Code != a.code || calls.Load() != 1 {
			t.Fatalf("%d: %v (%d calls)", a.status, err, calls.Load())
		}
		if path != "/v1/sagas/s1/signals/bad%20name%2Fx" {
			t.Fatalf("path %s", path)
		}
	}
}
