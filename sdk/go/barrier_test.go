package saga

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The barrier table is libsaga's, column for column: the statement the
// service's owner runs (migrations/participant/barrier.sql) is the one
// this package runs when the table is missing, and the upgrade of a table
// of an earlier release is barrier_element.sql's.
func TestBarrierTableIsLibsagas(t *testing.T) {
	sameAsScript(t, BarrierTableSQL, "barrier.sql")
	sameAsScript(t, BarrierUpgradeSQL, "barrier_element.sql")
}

func sameAsScript(t *testing.T, stmt, file string) {
	t.Helper()
	path := filepath.Join("..", "..", "migrations", "participant", file)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Skipf("no %s (the module outside its repository)", path)
	}
	var sql []string
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "--") {
			sql = append(sql, line)
		}
	}
	norm := func(s string) string {
		return strings.TrimSuffix(strings.TrimSpace(regexp.MustCompile(`\s+`).ReplaceAllString(s, " ")), ";")
	}
	if got, want := norm(stmt), norm(strings.Join(sql, "\n")); got != want {
		t.Fatalf("the barrier table differs from %s:\n got %s\nwant %s", path, got, want)
	}
}

// barrierOnly is a participant with a database of its own and no Kafka:
// its answer and withBarrier are called directly.
func barrierOnly(t *testing.T, ctx context.Context, dbURL string) *Participant {
	t.Helper()
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := barrierInit(ctx, pool); err != nil {
		t.Fatal(err)
	}
	return &Participant{opts: Options{Service: "svc"}, pool: pool, maxOutput: 262144,
		handlers: map[Phase]map[string]Handler{Invoke: {}, Compensate: {}},
		log:      slog.New(slog.NewTextHandler(io.Discard, nil)), logWindow: time.Now()}
}

func barrierCommand(id string, phase Phase, attempt int, payload string) *Command {
	action := "act"
	if phase == Compensate {
		action = "undo"
	}
	return &Command{V: ProtocolVersion, SagaID: id, Saga: "s", SagaVersion: 1, StepName: "a", Phase: phase,
		Action: action, CommandID: FormatCommandID(id, 0, phase), Attempt: attempt, ReplyTo: "saga.reply",
		Payload: json.RawMessage(payload)}
}

// compact is an output as JSON without spaces (a reply from the barrier
// holds it as PostgreSQL prints jsonb).
func compact(raw json.RawMessage) string {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return string(raw)
	}
	return b.String()
}

// barrierWrites gives saga_barrier's n_tup_ins, n_tup_upd and n_tup_del
// once every other backend of db's database is gone (the participant's
// pool closed): a backend flushes its statistics as it exits, before it
// leaves pg_stat_activity (while it runs, only now and then).
func barrierWrites(t *testing.T, ctx context.Context, db *pgx.Conn) [3]int64 {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var others int
		if err := db.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&others); err != nil {
			t.Fatal(err)
		}
		if others == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d other backends still on the database", others)
		}
	}
	if _, err := db.Exec(ctx, "SELECT pg_stat_clear_snapshot()"); err != nil {
		t.Fatal(err)
	}
	var n [3]int64
	if err := db.QueryRow(ctx, `SELECT n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables
		WHERE schemaname = 'public' AND relname = 'saga_barrier'`).Scan(&n[0], &n[1], &n[2]); err != nil {
		t.Fatal(err)
	}
	return n
}

// The barrier writes each command's row once, with its reply: no claim and
// then an update. Duplicates and retry write nothing.
func TestBarrierOneWritePerCommand(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dbURL, db := liveDB(t, ctx)
	if _, err := db.Exec(ctx, "CREATE TABLE effects (saga_id uuid, phase text)"); err != nil {
		t.Fatal(err)
	}
	p := barrierOnly(t, ctx, dbURL)
	h := func(ctx context.Context, tx pgx.Tx, c *Command) Result {
		if _, err := tx.Exec(ctx, "INSERT INTO effects VALUES ($1, $2)", c.SagaID, string(c.Phase)); err != nil {
			return Retry(0, "%v", err)
		}
		switch string(c.Payload) {
		case `{"do":"fail"}`:
			return Fail("no", "refused")
		case `{"do":"retry"}`:
			return Retry(0, "busy")
		}
		return OK(map[string]any{"attempt": c.Attempt})
	}
	p.OnAction("act", h)
	p.OnCompensation("undo", h)
	ids := []string{uuid4(), uuid4(), uuid4(), uuid4()}
	type sent struct {
		id      string
		phase   Phase
		attempt int
		payload string
		want    Status
	}
	var cmds []sent
	for _, id := range ids[:3] {
		cmds = append(cmds, sent{id, Invoke, 1, `{}`, StatusOK}, sent{id, Invoke, 2, `{}`, StatusOK}) // and a duplicate
	}
	cmds = append(cmds, sent{ids[3], Invoke, 1, `{"do":"fail"}`, StatusFailed}, sent{ids[3], Invoke, 2, `{"do":"fail"}`, StatusFailed},
		sent{ids[0], Invoke, 3, `{"do":"retry"}`, StatusOK}, // a duplicate still
		sent{ids[0], Compensate, 1, `{}`, StatusOK}, sent{ids[1], Compensate, 1, `{"do":"retry"}`, StatusRetry})
	for _, c := range cmds {
		rep := p.answer(ctx, barrierCommand(c.id, c.phase, c.attempt, c.payload))
		if rep.Status != c.want || rep.Attempt != c.attempt {
			t.Errorf("%s %s attempt %d: %s (attempt %d), want %s", c.id, c.phase, c.attempt, rep.Status, rep.Attempt, c.want)
		}
		if c.phase == Invoke && c.want == StatusOK && compact(rep.Output) != `{"attempt":1}` {
			t.Errorf("%s attempt %d: output %s, not the first attempt's", c.id, c.attempt, rep.Output)
		}
	}
	p.pool.Close()
	// Rows: 3 actions ok, 1 failed, 1 compensation: 5 commands recorded.
	if got := barrierWrites(t, ctx, db); got != [3]int64{5, 0, 0} {
		t.Errorf("saga_barrier: %d inserted, %d updated, %d deleted; want 5, 0, 0", got[0], got[1], got[2])
	}
	if st := p.Stats(); st.Duplicates != 5 || st.HandlerCalls != 6 {
		t.Errorf("stats %+v", st)
	}
}

// Two deliveries of one command handled at the same time (two instances):
// both find no row and run the handler; the one whose record comes second
// finds the first one's row, its writes are rolled back and it answers
// with the first reply. Likewise an action whose compensation (at the
// other instance) blocked it while its handler ran is refused, its writes
// rolled back.
func TestBarrierDeliveredTwiceAtOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dbURL, db := liveDB(t, ctx)
	if _, err := db.Exec(ctx, "CREATE TABLE effects (saga_id uuid, who text)"); err != nil {
		t.Fatal(err)
	}
	slowP, fastP := barrierOnly(t, ctx, dbURL), barrierOnly(t, ctx, dbURL)
	dup, late := uuid4(), uuid4()
	for _, c := range []struct {
		id         string
		phase      Phase // of the fast one; the slow one is the action
		fastOutput string
	}{{dup, Invoke, `{"who":"fast"}`}, {late, Compensate, `{"null_compensation":true}`}} {
		entered, release := make(chan struct{}), make(chan struct{})
		effect := func(who string) Handler {
			return func(ctx context.Context, tx pgx.Tx, cmd *Command) Result {
				if _, err := tx.Exec(ctx, "INSERT INTO effects VALUES ($1, $2)", cmd.SagaID, who); err != nil {
					return Retry(0, "%v", err)
				}
				if who == "slow" {
					close(entered)
					<-release
				}
				return OK(map[string]any{"who": who})
			}
		}
		done := make(chan *Reply, 1)
		go func() {
			rep, err := slowP.withBarrier(ctx, effect("slow"), barrierCommand(c.id, Invoke, 1, `{}`))
			if err != nil {
				t.Error(err)
			}
			done <- rep
		}()
		select {
		case <-entered:
		case <-ctx.Done():
			t.Fatal("the slow handler did not start")
		}
		fast, err := fastP.withBarrier(ctx, effect("fast"), barrierCommand(c.id, c.phase, 1, `{}`))
		close(release)
		slow := <-done
		if err != nil || fast.Status != StatusOK || compact(fast.Output) != c.fastOutput {
			t.Fatalf("the fast %s: %+v, %v", c.phase, fast, err)
		}
		if slow == nil {
			t.Fatal("no answer from the slow action")
		}
		switch c.phase {
		case Invoke:
			if slow.Status != StatusOK || compact(slow.Output) != `{"who":"fast"}` {
				t.Errorf("the slow duplicate: %s %s, want the fast one's reply", slow.Status, slow.Output)
			}
		default:
			if slow.Error == nil || slow.Error.Code != "hanging_action" {
				t.Errorf("the action its compensation blocked meanwhile: %+v", slow)
			}
		}
	}
	query := func(sql string) []string {
		rows, err := db.Query(ctx, sql)
		if err != nil {
			t.Fatal(err)
		}
		got, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := query("SELECT saga_id || ' ' || who FROM effects"); len(got) != 1 || got[0] != dup+" fast" {
		t.Errorf("effects %v: the slow runs left something", got)
	}
	want := []string{dup + " invoke handled {\"who\": \"fast\"}", late + " compensate null_compensation {\"null_compensation\": true}",
		late + " invoke blocked -"}
	sort.Strings(want)
	got := query(`SELECT saga_id || ' ' || phase || ' ' || outcome || ' ' || coalesce(reply->>'output', '-')
		FROM saga_barrier ORDER BY 1`)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("barrier rows\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if st := slowP.Stats(); st.Duplicates != 1 || st.HangingRefused != 1 || st.HandlerCalls != 2 {
		t.Errorf("the slow one's stats %+v", st)
	}
	if st := fastP.Stats(); st.NullCompensations != 1 || st.HandlerCalls != 1 {
		t.Errorf("the fast one's stats %+v", st)
	}
}
