package saga

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Fan-out elements (protocol version 2): element command ids, the
// encoder's range check, version 1 sending no element.
func TestElementIDsAndEncoding(t *testing.T) {
	const id = "0b5c3d9e-6a43-4f7e-9a51-2f8d0c1e7b22"
	for _, c := range []struct {
		element int
		want    string
	}{{7, id + "/2/invoke/7"}, {0, id + "/2/invoke/0"}, {-1, id + "/2/invoke"}} {
		if got := FormatElementCommandID(id, 2, Invoke, c.element); got != c.want {
			t.Errorf("element %d: %s, want %s", c.element, got, c.want)
		}
	}
	for _, bad := range []int{-1, ElementsMax} {
		r := &Reply{SagaID: id, Phase: Invoke, CommandID: "c", Attempt: 1, Status: StatusOK, V: 2, Element: bad}
		if _, err := r.Encode(); err == nil || !strings.Contains(err.Error(), "out of range [0, 99999]") {
			t.Errorf("element %d: %v", bad, err)
		}
	}
	r := &Reply{SagaID: id, Phase: Invoke, CommandID: "c", Attempt: 1, Status: StatusOK, Element: 5}
	if b, err := r.Encode(); err != nil || strings.Contains(string(b), "element") {
		t.Errorf("version 1 with an element: %s, %v", b, err)
	}
	r = Fail("hanging_action", "x").reply(&Command{SagaID: id, Phase: Invoke, CommandID: "c", Attempt: 2, V: 2, Element: 9}, nil)
	if r.V != 2 || r.Element != 9 {
		t.Errorf("a reply to element 9's command: v %d element %d", r.V, r.Element)
	}
}

// liveDB gives a database of the test's own on make check's PostgreSQL
// (skipped without SAGA_PG_URL), its URL and an admin connection to it.
func liveDB(t *testing.T, ctx context.Context) (string, *pgx.Conn) {
	t.Helper()
	pgURL := os.Getenv("SAGA_PG_URL")
	if pgURL == "" {
		t.Skip("SAGA_PG_URL is set by make check")
	}
	admin, err := pgx.Connect(ctx, pgURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close(context.Background()) })
	name := "go_sdk_" + uuid4()[:8]
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)") })
	u, _ := url.Parse(pgURL)
	u.Path = "/" + name
	db, err := pgx.Connect(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close(context.Background()) })
	return u.String(), db
}

// Each element of a fan-out step is a command of its own, against the real
// Kafka and PostgreSQL: its own barrier row, duplicate, null compensation
// and hanging action; its reply is version 2 with its element.
func TestElementsKafka(t *testing.T) {
	brokers := os.Getenv("SAGA_KAFKA_BROKERS")
	if brokers == "" {
		t.Skip("SAGA_KAFKA_BROKERS is set by make check")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dbURL, db := liveDB(t, ctx)
	prefix := "goel" + uuid4()[:8] + "."
	p, err := NewParticipant(ctx, Options{Brokers: strings.Split(brokers, ","), Service: "svc",
		TopicPrefix: prefix, DBURL: dbURL})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	calls, versions := map[string]int{}, map[string]int{}
	count := func(ctx context.Context, tx pgx.Tx, c *Command) Result {
		mu.Lock()
		calls[c.CommandID]++
		versions[c.CommandID] = c.V
		mu.Unlock()
		return OK(map[string]any{"element": c.Element})
	}
	p.OnAction("act", count)
	p.OnCompensation("undo", count)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(runCtx) }()

	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...), kgo.RecordPartitioner(LibrdkafkaPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	id := uuid4()
	produce := func(step int, phase Phase, element, attempt int) {
		action := "act"
		if phase == Compensate {
			action = "undo"
		}
		v := fmt.Sprintf(`{"v":2,"element":%d,"command_id":%q,`, element, FormatElementCommandID(id, step, phase, element))
		if element < 0 {
			v = fmt.Sprintf(`{"v":1,"command_id":%q,`, FormatCommandID(id, step, phase))
		}
		v += fmt.Sprintf(`"saga_id":%q,"saga":"s","saga_version":1,"step":%d,"step_name":"a","phase":%q,`+
			`"action":%q,"attempt":%d,"reply_to":%q}`, id, step, phase, action, attempt, prefix+"reply.svc")
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: prefix + "cmd.svc", Key: []byte(id), Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	sent := []struct {
		phase            Phase
		element, attempt int
	}{{Invoke, 0, 1}, {Invoke, 1, 1}, {Invoke, 1, 2}, // a duplicate of element 1
		{Compensate, 2, 1}, {Invoke, 2, 1}, // null compensation, hanging action
		{Compensate, 0, 1}} // element 0 ran: undone
	for _, s := range sent {
		produce(0, s.phase, s.element, s.attempt)
	}
	produce(1, Invoke, -1, 1) // version 1, another step

	rc, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...), kgo.ConsumeTopics(prefix+"reply.svc"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var replies []*Reply
	for deadline := time.Now().Add(30 * time.Second); len(replies) < len(sent)+1 && time.Now().Before(deadline); {
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		for _, r := range rc.PollFetches(pctx).Records() {
			rep, err := DecodeReply(r.Value)
			if err != nil {
				t.Fatalf("reply %s: %v", r.Value, err)
			}
			replies = append(replies, rep)
		}
		pcancel()
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	p.Close()
	if len(replies) != len(sent)+1 {
		t.Fatalf("%d replies, want %d", len(replies), len(sent)+1)
	}
	one := func(step int, phase Phase, element, attempt int) *Reply {
		t.Helper()
		for _, r := range replies {
			if r.Step == step && r.Phase == phase && r.Element == element && r.Attempt == attempt {
				wantV, wantID := ProtocolVersionElements, FormatElementCommandID(id, step, phase, element)
				if step == 1 {
					wantV, wantID = ProtocolVersion, FormatCommandID(id, step, phase)
				}
				if r.V != wantV || r.CommandID != wantID {
					t.Errorf("reply v %d %s, want v %d %s", r.V, r.CommandID, wantV, wantID)
				}
				return r
			}
		}
		t.Fatalf("no reply to step %d %s element %d attempt %d", step, phase, element, attempt)
		return nil
	}
	output := func(r *Reply) string { return string(r.Output) }
	if got := output(one(0, Invoke, 1, 2)); got != output(one(0, Invoke, 1, 1)) || got != `{"element":1}` {
		t.Errorf("element 1's duplicate: %s", got)
	}
	if got := output(one(0, Compensate, 2, 1)); got != `{"null_compensation":true}` {
		t.Errorf("element 2's compensation: %s", got)
	}
	h := one(0, Invoke, 2, 1)
	if h.Error == nil || h.Error.Code != "hanging_action" || !strings.HasPrefix(h.Error.Message, "step 0 element 2 of saga ") {
		t.Errorf("element 2's action: %+v", h.Error)
	}
	if got := output(one(0, Compensate, 0, 1)); got != `{"element":0}` {
		t.Errorf("element 0's compensation: %s", got)
	}
	if one(0, Invoke, 0, 1).Status != StatusOK || one(1, Invoke, 0, 1).Status != StatusOK {
		t.Error("element 0's action or the version 1 command failed")
	}
	want := map[string]int{FormatElementCommandID(id, 0, Invoke, 0): 1, FormatElementCommandID(id, 0, Invoke, 1): 1,
		FormatElementCommandID(id, 0, Compensate, 0): 1, FormatCommandID(id, 1, Invoke): 1}
	if fmt.Sprint(calls) != fmt.Sprint(want) {
		t.Errorf("handler calls %v, want %v", calls, want)
	}
	for cid, v := range versions {
		if want := 2; strings.HasPrefix(cid, id+"/1/") && v != 1 || !strings.HasPrefix(cid, id+"/1/") && v != want {
			t.Errorf("the handler saw %s as version %d", cid, v)
		}
	}
	rows, err := db.Query(ctx, `SELECT step || ' ' || element || ' ' || phase || ' ' || outcome || ' ' || command_id
		FROM saga_barrier WHERE saga_id = $1 ORDER BY 1`, id)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	wantRows := []string{
		"0 0 compensate handled " + FormatElementCommandID(id, 0, Compensate, 0),
		"0 0 invoke handled " + FormatElementCommandID(id, 0, Invoke, 0),
		"0 1 invoke handled " + FormatElementCommandID(id, 0, Invoke, 1),
		"0 2 compensate null_compensation " + FormatElementCommandID(id, 0, Compensate, 2),
		"0 2 invoke blocked " + FormatElementCommandID(id, 0, Invoke, 2),
		"1 0 invoke handled " + FormatCommandID(id, 1, Invoke),
	}
	if strings.Join(got, "\n") != strings.Join(wantRows, "\n") {
		t.Errorf("barrier rows\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantRows, "\n"))
	}
	if st := p.Stats(); st.Duplicates != 1 || st.NullCompensations != 1 || st.HangingRefused != 1 {
		t.Errorf("stats %+v", st)
	}
}

const oldBarrier = `CREATE TABLE saga_barrier (saga_id uuid NOT NULL, step int NOT NULL,
    phase text NOT NULL CHECK (phase IN ('invoke','compensate')),
    command_id text NOT NULL, outcome text NOT NULL, reply jsonb,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (saga_id, step, phase))`

// A barrier table of an earlier release (no element column): upgraded by
// barrierInit when the role owns it, its rows kept as element 0; refused,
// naming the script, when the role may only use it; the script (run twice)
// then makes the same table, and the role's participant starts.
func TestBarrierUpgrade(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dbURL, db := liveDB(t, ctx)
	old := uuid4()
	role := "go_role_" + uuid4()[:8]
	for _, sql := range []string{
		"CREATE SCHEMA a", "CREATE SCHEMA b", "CREATE SCHEMA fresh",
		"SET search_path = a", oldBarrier,
		"SET search_path = b", oldBarrier,
		"RESET search_path",
		"CREATE ROLE " + role + " LOGIN",
		"GRANT USAGE ON SCHEMA b TO " + role,
		"GRANT SELECT, INSERT, UPDATE ON b.saga_barrier TO " + role,
	} {
		if _, err := db.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	t.Cleanup(func() {
		db.Exec(context.Background(), "DROP SCHEMA b CASCADE")
		db.Exec(context.Background(), "DROP OWNED BY "+role)
		db.Exec(context.Background(), "DROP ROLE "+role)
	})
	for _, s := range []string{"a", "b"} {
		if _, err := db.Exec(ctx, "INSERT INTO "+s+`.saga_barrier (saga_id, step, phase, command_id, outcome)
			VALUES ($1, 0, 'invoke', $2, 'handled')`, old, FormatCommandID(old, 0, Invoke)); err != nil {
			t.Fatal(err)
		}
	}
	pool := func(u, schema string) *pgxpool.Pool {
		cfg, err := pgxpool.ParseConfig(u)
		if err != nil {
			t.Fatal(err)
		}
		cfg.ConnConfig.RuntimeParams["search_path"] = schema
		p, err := pgxpool.NewWithConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		return p
	}
	owner := pool(dbURL, "a")
	for i := 0; i < 2; i++ { // upgraded, then nothing to do
		if err := barrierInit(ctx, owner); err != nil {
			t.Fatal(err)
		}
	}
	if err := barrierInit(ctx, pool(dbURL, "fresh")); err != nil { // made new
		t.Fatal(err)
	}
	u, _ := url.Parse(dbURL)
	u.User = url.User(role)
	err := barrierInit(ctx, pool(u.String(), "b"))
	if err == nil || !strings.Contains(err.Error(), "b.saga_barrier predates fan-out elements") ||
		!strings.Contains(err.Error(), "migrations/participant/barrier_element.sql") || !strings.Contains(err.Error(), role) {
		t.Fatalf("the role that may not alter it: %v", err)
	}
	script, err := os.ReadFile(filepath.Join("..", "..", "migrations", "participant", "barrier_element.sql"))
	if err != nil {
		script = []byte(BarrierUpgradeSQL) // the module outside its repository
	}
	for _, sql := range []string{"SET search_path = b", string(script), string(script), "RESET search_path"} {
		if _, err := db.Exec(ctx, sql); err != nil {
			t.Fatalf("%.40s: %v", sql, err)
		}
	}
	if err := barrierInit(ctx, pool(u.String(), "b")); err != nil {
		t.Fatalf("after the owner's upgrade: %v", err)
	}
	layout := func(schema string) string {
		rows, err := db.Query(ctx, `SELECT x FROM (
			SELECT a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || ' ' || a.attnotnull || ' '
			  || coalesce(pg_get_expr(d.adbin, d.adrelid), '') AS x
			  FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
			 WHERE a.attrelid = ($1 || '.saga_barrier')::regclass AND a.attnum > 0 AND NOT a.attisdropped
			UNION ALL SELECT pg_get_constraintdef(oid) FROM pg_constraint
			 WHERE conrelid = ($1 || '.saga_barrier')::regclass) l ORDER BY 1`, schema)
		if err != nil {
			t.Fatal(err)
		}
		got, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(got)
		return string(b)
	}
	if a, b, f := layout("a"), layout("b"), layout("fresh"); a != f || b != f || !strings.Contains(f, "PRIMARY KEY (saga_id, step, element, phase)") {
		t.Errorf("layouts differ:\n upgraded %s\n by the script %s\n new %s", a, b, f)
	}
	for _, s := range []string{"a", "b"} {
		var element int
		if err := db.QueryRow(ctx, "SELECT element FROM "+s+".saga_barrier WHERE saga_id = $1", old).Scan(&element); err != nil || element != 0 {
			t.Errorf("schema %s: the old row: element %d, %v", s, element, err)
		}
	}
}
