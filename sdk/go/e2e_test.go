package saga

// End-to-end tests against a real sagad, Kafka, PostgreSQL and the C
// example services, driven by tests/integration/test_go_sdk.sh, which
// starts the processes each stage needs and sets SAGA_GO_E2E=1 (skipped
// otherwise):
//
//	TestE2EGo     inventory served by inventory-go alone
//	TestE2EC      then by the C inventory-service alone, on the same database
//	TestE2EGoAfterC then by inventory-go again
//	TestE2EMixed  then by one of each in one consumer group

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/sagad/saga-go/client"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

type e2e struct {
	t      *testing.T
	ctx    context.Context
	api    *client.Client
	cl     *kgo.Client
	db     *pgx.Conn
	prefix string
}

func newE2E(t *testing.T) *e2e {
	if os.Getenv("SAGA_GO_E2E") != "1" {
		t.Skip("SAGA_GO_E2E=1 is set by tests/integration/test_go_sdk.sh")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	e := &e2e{t: t, ctx: ctx, prefix: os.Getenv("SAGA_TOPIC_PREFIX"),
		api: client.New(os.Getenv("SAGA_API_URL"), os.Getenv("SAGA_API_TOKEN"))}
	var err error
	if e.cl, err = kgo.NewClient(kgo.SeedBrokers(strings.Split(os.Getenv("SAGA_KAFKA_BROKERS"), ",")...),
		kgo.RecordPartitioner(LibrdkafkaPartitioner())); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.cl.Close)
	if e.db, err = pgx.Connect(ctx, os.Getenv("SAGA_PG_URL")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.db.Close(context.Background()) })
	return e
}

func (e *e2e) int(sql string, args ...any) int64 {
	e.t.Helper()
	var n int64
	if err := e.db.QueryRow(e.ctx, sql, args...).Scan(&n); err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func (e *e2e) run(input map[string]any, key string) *client.Saga {
	e.t.Helper()
	s, err := e.api.Start(e.ctx, "order", input, client.StartOptions{BusinessKey: key})
	if err != nil {
		e.t.Fatalf("start %s: %v", key, err)
	}
	if s, err = e.api.Wait(e.ctx, s.ID, time.Minute); err != nil || s.Running() {
		e.t.Fatalf("saga %s did not end: %+v %v", key, s, err)
	}
	return s
}

// records reads a whole topic from its start (no group).
func (e *e2e) records(topic string) []*kgo.Record {
	e.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(os.Getenv("SAGA_KAFKA_BROKERS"), ",")...),
		kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		e.t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	for {
		ctx, cancel := context.WithTimeout(e.ctx, 2*time.Second)
		f := cl.PollFetches(ctx)
		cancel()
		recs := f.Records()
		if len(recs) == 0 {
			return out
		}
		out = append(out, recs...)
	}
}

func uuid4() string {
	b := make([]byte, 16)
	rand.Read(b)
	b[6], b[8] = b[6]&0x0f|0x40, b[8]&0x3f|0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// command produces a command of step 2 (reserve_stock) by hand, as sagad
// would, and waits for the reply with this attempt (unique per call).
func (e *e2e) command(sagaID string, phase Phase, attempt int, payload string) *Reply {
	e.t.Helper()
	action := "reserve_stock"
	if phase == Compensate {
		action = "release_stock"
	}
	cmd := fmt.Sprintf(`{"v":1,"saga_id":%q,"saga":"order","saga_version":1,"step":2,"step_name":"reserve_stock",`+
		`"phase":%q,"action":%q,"command_id":%q,"attempt":%d,"reply_to":%q,"payload":%s}`,
		sagaID, phase, action, FormatCommandID(sagaID, 2, phase), attempt, e.prefix+"reply.inventory", payload)
	rec := &kgo.Record{Topic: e.prefix + "cmd.inventory", Key: []byte(sagaID), Value: []byte(cmd),
		Headers: []kgo.RecordHeader{{Key: "traceparent", Value: []byte("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")}}}
	if err := e.cl.ProduceSync(e.ctx, rec).FirstErr(); err != nil {
		e.t.Fatal(err)
	}
	return e.reply(FormatCommandID(sagaID, 2, phase), attempt)
}

func (e *e2e) reply(commandID string, attempt int) *Reply {
	e.t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(300 * time.Millisecond) {
		for _, r := range e.records(e.prefix + "reply.inventory") {
			rep, err := DecodeReply(r.Value)
			if err == nil && rep.CommandID == commandID && rep.Attempt == attempt {
				if string(header(r, "traceparent")) != "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" {
					e.t.Errorf("reply to %s: traceparent %q not copied", commandID, header(r, "traceparent"))
				}
				return rep
			}
		}
	}
	e.t.Fatalf("no reply to %s attempt %d", commandID, attempt)
	return nil
}

func (e *e2e) state(name string) string {
	b, err := os.ReadFile(os.Getenv("SAGA_GO_E2E_STATE") + "." + name)
	if err != nil {
		e.t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func (e *e2e) save(name, value string) {
	if err := os.WriteFile(os.Getenv("SAGA_GO_E2E_STATE")+"."+name, []byte(value), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

func TestE2EGo(t *testing.T) {
	e := newE2E(t)
	// The order saga to completion, inventory answered by Go.
	s := e.run(map[string]any{"customer_id": "alice", "sku": "widget", "quantity": 2, "amount": 100}, "go-ok")
	var out struct {
		SKU      string `json:"sku"`
		Reserved int    `json:"reserved"`
	}
	if s.Status != "completed" || json.Unmarshal(s.Steps[2].Output, &out) != nil || out.SKU != "widget" || out.Reserved != 2 {
		t.Fatalf("go-ok: %s, reserve_stock output %s", s.Status, s.Steps[2].Output)
	}
	e.save("ok", s.ID)
	// Through compensation: inventory says no, payment and order are undone.
	f := e.run(map[string]any{"customer_id": "alice", "sku": "gadget", "quantity": 5, "amount": 100}, "go-short")
	if f.Status != "compensated" || f.Steps[2].Status != "failed" || !strings.Contains(string(f.Steps[2].Error), "insufficient_stock") ||
		f.Steps[1].Status != "compensated" || f.Steps[0].Status != "compensated" {
		t.Fatalf("go-short: %+v", f)
	}
	if n := e.int("SELECT reserved FROM payment.customers WHERE id = 'alice'"); n != 100 {
		t.Fatalf("alice's reserved credit %d, want 100 (the failed saga's released)", n)
	}
	// Replies go to the partition librdkafka gives their key: the one
	// sagad (librdkafka) put the command on (both topics have 4).
	cmdPart := map[string]int32{}
	for _, r := range e.records(e.prefix + "cmd.inventory") {
		cmdPart[string(r.Key)] = r.Partition
	}
	replies := e.records(e.prefix + "reply.inventory")
	for _, r := range replies {
		if p, ok := cmdPart[string(r.Key)]; !ok || p != r.Partition {
			t.Errorf("the reply for saga %s is on partition %d, its command on %d", r.Key, r.Partition, p)
		}
	}
	// Duplicates: every command produced again is answered from the
	// barrier, with no second effect.
	stock := e.int("SELECT available FROM inventory.stock WHERE sku = 'widget'")
	rows := e.int("SELECT count(*) FROM inventory.saga_barrier")
	for _, r := range e.records(e.prefix + "cmd.inventory") {
		r2 := &kgo.Record{Topic: r.Topic, Key: r.Key, Value: r.Value, Headers: r.Headers}
		if err := e.cl.ProduceSync(e.ctx, r2).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	for deadline := time.Now().Add(30 * time.Second); len(e.records(e.prefix+"reply.inventory")) < 2*len(replies); {
		if time.Now().After(deadline) {
			t.Fatalf("duplicates not answered: %d replies, want %d", len(e.records(e.prefix+"reply.inventory")), 2*len(replies))
		}
		time.Sleep(300 * time.Millisecond)
	}
	if got := e.int("SELECT available FROM inventory.stock WHERE sku = 'widget'"); got != stock {
		t.Fatalf("duplicates changed the stock: %d, was %d", got, stock)
	}
	if got := e.int("SELECT count(*) FROM inventory.saga_barrier"); got != rows {
		t.Fatalf("duplicates added barrier rows: %d, was %d", got, rows)
	}
	// Null compensation and hanging action, by hand.
	x := uuid4()
	if r := e.command(x, Compensate, 7, `{"input":{"sku":"widget","quantity":1,"order_id":"o"},"output":null}`); r.Status != StatusOK ||
		string(r.Output) != `{"null_compensation":true}` {
		t.Fatalf("null compensation: %+v", r)
	}
	if r := e.command(x, Invoke, 8, `{"sku":"widget","quantity":1,"order_id":"o"}`); r.Status != StatusFailed || r.Error.Code != "hanging_action" {
		t.Fatalf("hanging action: %+v", r)
	}
	if got := e.int("SELECT count(*) FROM inventory.reservations WHERE saga_id = $1", x); got != 0 {
		t.Fatal("the hanging action took effect")
	}
	e.save("blocked", x)
	// A new saga id for the C stage: its compensation will come first there.
	e.save("fresh", uuid4())
}

// TestE2EC: the C inventory-service on the barrier rows Go wrote.
func TestE2EC(t *testing.T) {
	e := newE2E(t)
	ok, blocked, fresh := e.state("ok"), e.state("blocked"), e.state("fresh")
	// A duplicate of the Go-handled action: C answers with Go's reply.
	r := e.command(ok, Invoke, 11, `{"sku":"widget","quantity":2,"order_id":"o"}`)
	if r.Status != StatusOK || !strings.Contains(string(r.Output), `"reserved":2`) {
		t.Fatalf("C on Go's barrier row: %+v", r)
	}
	// The action Go blocked: C refuses it too.
	if r := e.command(blocked, Invoke, 12, `{"sku":"widget","quantity":1,"order_id":"o"}`); r.Status != StatusFailed || r.Error.Code != "hanging_action" {
		t.Fatalf("C on Go's blocked row: %+v", r)
	}
	// C blocks one for Go to refuse (TestE2EGoAfterC).
	if r := e.command(fresh, Compensate, 13, `{"input":{},"output":null}`); r.Status != StatusOK {
		t.Fatalf("C's null compensation: %+v", r)
	}
}

// TestE2EGoAfterC: Go on the rows C wrote.
func TestE2EGoAfterC(t *testing.T) {
	e := newE2E(t)
	ok, fresh := e.state("ok"), e.state("fresh")
	if r := e.command(fresh, Invoke, 21, `{"sku":"widget","quantity":1,"order_id":"o"}`); r.Status != StatusFailed || r.Error.Code != "hanging_action" {
		t.Fatalf("Go on C's blocked row: %+v", r)
	}
	// Compensating the completed saga's step by hand: Go releases what it
	// reserved; a duplicate of it is answered from the barrier and changes nothing.
	before := e.int("SELECT available FROM inventory.stock WHERE sku = 'widget'")
	if r := e.command(ok, Compensate, 22, `{"input":{},"output":{}}`); r.Status != StatusOK || string(r.Output) != `{"released":2}` {
		t.Fatalf("release: %+v", r)
	}
	if r := e.command(ok, Compensate, 23, `{"input":{},"output":{}}`); r.Status != StatusOK || string(r.Output) != `{"released":2}` {
		t.Fatalf("release again: %+v", r)
	}
	if got := e.int("SELECT available FROM inventory.stock WHERE sku = 'widget'"); got != before+2 {
		t.Fatalf("stock %d after the release, want %d", got, before+2)
	}
}

// TestE2EMixed: a C and a Go instance in one consumer group and one
// barrier table serve the order saga together.
func TestE2EMixed(t *testing.T) {
	e := newE2E(t)
	// The group forms with both (franz-go offers librdkafka's range and
	// roundrobin assignors) and each owns partitions.
	adm := kadm.NewClient(e.cl)
	var members string
	for deadline := time.Now().Add(40 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		groups, err := adm.DescribeGroups(e.ctx, "saga-svc-inventory")
		g, ok := groups["saga-svc-inventory"]
		owners := 0
		members = ""
		if err == nil && ok && g.State == "Stable" {
			for _, m := range g.Members {
				if a, ok := m.Assigned.AsConsumer(); ok && len(a.Topics) > 0 && len(a.Topics[0].Partitions) > 0 {
					owners++
				}
				members += fmt.Sprintf(" %s(%s)", m.ClientID, g.Protocol)
			}
		}
		if owners == 2 && len(g.Members) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the group saga-svc-inventory did not become two members owning partitions: %+v %v", g, err)
		}
	}
	t.Logf("group saga-svc-inventory:%s", members)
	if _, err := e.db.Exec(e.ctx, "UPDATE inventory.stock SET available = 100 WHERE sku = 'widget'"); err != nil {
		t.Fatal(err)
	}
	const n = 12
	before := e.int("SELECT available FROM inventory.stock WHERE sku = 'widget'")
	var ids []string
	for i := 0; i < n; i++ {
		s, err := e.api.Start(e.ctx, "order", map[string]any{"customer_id": "alice", "sku": "widget", "quantity": 1, "amount": 1},
			client.StartOptions{BusinessKey: fmt.Sprintf("mixed-%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, s.ID)
	}
	for _, id := range ids {
		s, err := e.api.Wait(e.ctx, id, time.Minute)
		if err != nil || s.Status != "completed" {
			t.Fatalf("saga %s: %+v %v", id, s, err)
		}
	}
	if got := e.int("SELECT available FROM inventory.stock WHERE sku = 'widget'"); got != before-n {
		t.Fatalf("stock %d, want %d", got, before-n)
	}
	if got := e.int("SELECT count(*) FROM inventory.reservations WHERE saga_id = ANY($1::uuid[])", ids); got != n {
		t.Fatalf("%d reservations, want %d", got, n)
	}
	b, _ := json.Marshal(ids)
	e.save("mixed", string(b))
}
