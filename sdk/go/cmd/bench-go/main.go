// Command bench-go is the benchmark's participant (examples/bench_service.c)
// written with the Go SDK, for scripts/bench's "Participants in Python and
// Go" runs (docs/PERFORMANCE.md): service "bench", action "work" (fails
// definitively at the step the saga's input names in fail_at, else replies
// {"step": N}) and compensation "undo" (replies ok, no output), both
// through the barrier in schema "bench": one PostgreSQL transaction per
// command, the barrier row and nothing else, as the C service does.
// Environment: SAGA_KAFKA_BROKERS, SAGA_PG_URL, SAGA_TOPIC_PREFIX,
// SAGA_KEY_FILE, SAGA_INSTANCE_ID.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5"
	saga "github.com/sagad/saga-go"
)

// work fails at the step named by the payload's fail_at (an integer, as
// jansson's json_is_integer has it in the C service), else replies its step.
func work(_ context.Context, _ pgx.Tx, c *saga.Command) saga.Result {
	var in struct {
		FailAt json.RawMessage `json:"fail_at"`
	}
	if err := c.Bind(&in); err == nil && len(in.FailAt) > 0 {
		if n, err := strconv.ParseInt(string(in.FailAt), 10, 64); err == nil && n == int64(c.Step) {
			return saga.Fail("bench_failure", "step %d fails on purpose", c.Step)
		}
	}
	return saga.OK(map[string]int{"step": c.Step})
}

func undo(context.Context, pgx.Tx, *saga.Command) saga.Result { return saga.OK(nil) }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "bench-go:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	url, brokers := os.Getenv("SAGA_PG_URL"), os.Getenv("SAGA_KAFKA_BROKERS")
	if url == "" || brokers == "" {
		return fmt.Errorf("set SAGA_KAFKA_BROKERS and SAGA_PG_URL")
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	_, err = conn.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS bench")
	conn.Close(ctx)
	if err != nil {
		return fmt.Errorf("creating schema bench: %w", err)
	}
	p, err := saga.NewParticipant(ctx, saga.Options{
		Brokers: strings.Split(brokers, ","), Service: "bench", DBURL: url, DBSchema: "bench",
		TopicPrefix: os.Getenv("SAGA_TOPIC_PREFIX"), KeyFile: os.Getenv("SAGA_KEY_FILE"),
		InstanceID: os.Getenv("SAGA_INSTANCE_ID"), Logger: slog.New(slog.NewTextHandler(os.Stderr, nil)),
	})
	if err != nil {
		return err
	}
	defer p.Close()
	p.OnAction("work", work)
	p.OnCompensation("undo", undo)
	fmt.Fprintln(os.Stderr, "bench-go: ready")
	err = p.Run(ctx)
	s := p.Stats()
	fmt.Fprintf(os.Stderr, "bench-go: stopped: %d handled, %d duplicates, %d null compensations, %d hanging refused, %d malformed, %d dead-lettered\n",
		s.Handled, s.Duplicates, s.NullCompensations, s.HangingRefused, s.Malformed, s.DeadLettered)
	return err
}
