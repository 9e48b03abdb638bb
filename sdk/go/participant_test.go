package saga

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// A participant against the real Kafka and PostgreSQL of make check
// (SAGA_KAFKA_BROKERS, SAGA_PG_URL; skipped without them), in a database
// and a topic prefix of its own: signatures checked and made, malformed
// and unsigned commands dead-lettered with their reason, a graceful stop
// that leaves the offsets committed.
func TestParticipantKafka(t *testing.T) {
	brokers, pgURL := os.Getenv("SAGA_KAFKA_BROKERS"), os.Getenv("SAGA_PG_URL")
	if brokers == "" || pgURL == "" {
		t.Skip("SAGA_KAFKA_BROKERS and SAGA_PG_URL are set by make check")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	suffix := uuid4()[:8]
	admin, err := pgx.Connect(ctx, pgURL)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	dbName := "go_sdk_" + suffix
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+dbName); err != nil {
		t.Fatal(err)
	}
	defer admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+dbName+" WITH (FORCE)")
	u, _ := url.Parse(pgURL)
	u.Path = "/" + dbName
	prefix := "gotest" + suffix + "."
	keyHex := strings.Repeat("5a", 32)
	keys, _ := KeysFromHex(keyHex)
	keyFile := t.TempDir() + "/svc.key"
	if err := os.WriteFile(keyFile, []byte(keyHex+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := NewParticipant(ctx, Options{Brokers: strings.Split(brokers, ","), Service: "svc",
		TopicPrefix: prefix, DBURL: u.String(), KeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	p.OnAction("act", func(ctx context.Context, tx pgx.Tx, c *Command) Result {
		calls++
		return OK(map[string]any{"n": calls})
	})
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(runCtx) }()

	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...), kgo.RecordPartitioner(LibrdkafkaPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	id := uuid4()
	cmd := func(replyTo string) []byte {
		return []byte(fmt.Sprintf(`{"v":1,"saga_id":%q,"saga":"s","saga_version":1,"step":0,"step_name":"a","phase":"invoke",`+
			`"action":"act","command_id":%q,"attempt":1,"reply_to":%q}`, id, FormatCommandID(id, 0, Invoke), replyTo))
	}
	produce := func(value []byte, signed bool) {
		r := &kgo.Record{Topic: prefix + "cmd.svc", Key: []byte(id), Value: value}
		if signed {
			r.Headers = []kgo.RecordHeader{{Key: SignatureHeader, Value: []byte(keys.Sign(r.Topic, r.Key, r.Value))}}
		}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	produce(cmd(prefix+"reply.svc"), false)        // unsigned
	produce([]byte(`{"v":1,"saga_id":"x"}`), true) // malformed
	produce(cmd("elsewhere"), true)                // a reply_to not ours
	produce(cmd(prefix+"reply.svc"), true)         // good
	produce(cmd(prefix+"reply.svc"), true)         // its duplicate

	read := func(topic string, want int) []*kgo.Record {
		c, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...), kgo.ConsumeTopics(topic),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		var out []*kgo.Record
		for deadline := time.Now().Add(30 * time.Second); len(out) < want && time.Now().Before(deadline); {
			pctx, pcancel := context.WithTimeout(ctx, time.Second)
			out = append(out, c.PollFetches(pctx).Records()...)
			pcancel()
		}
		if len(out) != want {
			t.Fatalf("%s: %d records, want %d", topic, len(out), want)
		}
		return out
	}
	dead := read(prefix+"dead.svc", 3)
	for i, want := range []string{"unauthenticated: unsigned", "malformed: field \"saga_id\" is not a UUID", "malformed: field \"reply_to\" is \"elsewhere\""} {
		if got := string(header(dead[i], "saga-dead-reason")); !strings.HasPrefix(got, want) {
			t.Errorf("dead letter %d: reason %q, want %q...", i, got, want)
		}
		if string(header(dead[i], "saga-dead-service")) != "svc" || string(header(dead[i], "saga-dead-topic")) != prefix+"cmd.svc" {
			t.Errorf("dead letter %d: headers %v", i, dead[i].Headers)
		}
	}
	replies := read(prefix+"reply.svc", 2)
	for _, r := range replies {
		if err := keys.Verify(r.Topic, r.Key, r.Value, header(r, SignatureHeader)); err != nil {
			t.Errorf("reply not signed: %v", err)
		}
		if !strings.Contains(string(r.Value), `"output":{"n":1}`) {
			t.Errorf("reply %s: not the first (and only) call's", r.Value)
		}
	}
	if calls != 1 {
		t.Errorf("the handler ran %d times", calls)
	}
	// Graceful stop: Run returns nil, Close commits what was answered.
	stop()
	if err := <-done; err != nil {
		t.Fatalf("Run after cancel: %v", err)
	}
	p.Close()
	st := p.Stats()
	if st.Received != 5 || st.Duplicates != 1 || st.Unauthenticated != 1 || st.Malformed != 2 || st.DeadLettered != 3 || st.RepliedOK != 2 {
		t.Errorf("stats %+v", st)
	}
	offsets, err := kadm.NewClient(cl).FetchOffsets(ctx, "saga-svc-svc")
	if err != nil {
		t.Fatal(err)
	}
	var committed int64
	offsets.Each(func(o kadm.OffsetResponse) {
		if o.Topic == prefix+"cmd.svc" { // the group is libsaga's name, shared by earlier runs
			committed += o.At
		}
	})
	if committed != 5 {
		t.Errorf("committed offsets add up to %d, want 5 (every command answered or set aside)", committed)
	}
}
