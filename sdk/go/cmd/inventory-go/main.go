// Command inventory-go is the example inventory participant
// (examples/inventory_service.c) written with the Go SDK: the same actions,
// tables and replies, so a C and a Go instance can serve one service
// together. Environment: SAGA_KAFKA_BROKERS, SAGA_PG_URL, SAGA_TOPIC_PREFIX,
// SAGA_KEY_FILE, SAGA_INSTANCE_ID; for tests, SAGA_EXAMPLE_STALL_MS: each
// reserve_stock sleeps this long after its writes, before its transaction
// commits (tests/integration/test_mixed_sdk.sh kills it there).
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	saga "github.com/sagad/saga-go"
)

const schema = `CREATE SCHEMA IF NOT EXISTS inventory; SET search_path TO inventory;
CREATE TABLE IF NOT EXISTS command_log (id bigserial PRIMARY KEY, saga_id uuid NOT NULL, step int NOT NULL,
  phase text NOT NULL, action text NOT NULL, attempt int NOT NULL,
  received_at timestamptz NOT NULL DEFAULT clock_timestamp(), trace_id text, span_id text);
CREATE TABLE IF NOT EXISTS stock (sku text PRIMARY KEY, available int NOT NULL CHECK (available >= 0));
CREATE TABLE IF NOT EXISTS reservations (saga_id uuid PRIMARY KEY, order_id text NOT NULL, sku text NOT NULL,
  quantity int NOT NULL, status text NOT NULL CHECK (status IN ('reserved', 'released')),
  created_at timestamptz NOT NULL DEFAULT now(), released_at timestamptz)`

const retryDB = 500 * time.Millisecond // a database error: sagad tries again

// logCommand records the command in command_log, in the handler's transaction.
func logCommand(ctx context.Context, tx pgx.Tx, c *saga.Command) error {
	var trace, span *string
	if f := strings.Split(c.Traceparent, "-"); len(f) == 4 {
		trace, span = &f[1], &f[2]
	}
	fmt.Fprintf(os.Stderr, "%s %s saga=%s step=%s attempt=%d\n", c.Phase, c.Action, c.SagaID, c.StepName, c.Attempt)
	_, err := tx.Exec(ctx, `INSERT INTO command_log (saga_id, step, phase, action, attempt, trace_id, span_id)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, c.SagaID, c.Step, string(c.Phase), c.Action, c.Attempt, trace, span)
	return err
}

func reserveStock(ctx context.Context, tx pgx.Tx, c *saga.Command) saga.Result {
	var in struct {
		SKU      string `json:"sku"`
		OrderID  string `json:"order_id"`
		Quantity int64  `json:"quantity"`
	}
	if err := c.Bind(&in); err != nil || in.SKU == "" || in.OrderID == "" || in.Quantity <= 0 {
		return saga.Fail("bad_input", "%s: sku and order_id (strings) and quantity (> 0) are needed", c.Action)
	}
	if err := logCommand(ctx, tx, c); err != nil {
		return saga.Retry(retryDB, "database: %v", err)
	}
	var available int64
	err := tx.QueryRow(ctx, "SELECT available FROM stock WHERE sku = $1 FOR UPDATE", in.SKU).Scan(&available)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return saga.Fail("unknown_sku", "no product %q", in.SKU)
	case err != nil:
		return saga.Retry(retryDB, "database: %v", err)
	case available < in.Quantity:
		return saga.Fail("insufficient_stock", "%d of %q in stock, %d wanted", available, in.SKU, in.Quantity)
	}
	if _, err := tx.Exec(ctx, `UPDATE stock SET available = available - $2 WHERE sku = $1`, in.SKU, in.Quantity); err != nil {
		return saga.Retry(retryDB, "database: %v", err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO reservations (saga_id, order_id, sku, quantity, status)
		VALUES ($1, $2, $3, $4, 'reserved')`, c.SagaID, in.OrderID, in.SKU, in.Quantity); err != nil {
		return saga.Retry(retryDB, "database: %v", err)
	}
	if ms, _ := strconv.Atoi(os.Getenv("SAGA_EXAMPLE_STALL_MS")); ms > 0 {
		fmt.Fprintf(os.Stderr, "stalling %d ms saga=%s\n", ms, c.SagaID)
		time.Sleep(time.Duration(ms) * time.Millisecond)
	}
	return saga.OK(map[string]any{"sku": in.SKU, "reserved": in.Quantity})
}

// releaseStock puts back what this saga reserved, if anything.
func releaseStock(ctx context.Context, tx pgx.Tx, c *saga.Command) saga.Result {
	if err := logCommand(ctx, tx, c); err != nil {
		return saga.Retry(retryDB, "database: %v", err)
	}
	var released int64
	err := tx.QueryRow(ctx, `WITH rel AS (UPDATE reservations SET status = 'released', released_at = now()
		  WHERE saga_id = $1 AND status = 'reserved' RETURNING sku, quantity)
		UPDATE stock s SET available = s.available + rel.quantity FROM rel
		WHERE s.sku = rel.sku RETURNING rel.quantity`, c.SagaID).Scan(&released)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return saga.Retry(retryDB, "database: %v", err)
	}
	return saga.OK(map[string]any{"released": released})
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "inventory-go:", err)
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
	_, err = conn.Exec(ctx, schema)
	conn.Close(ctx)
	if err != nil {
		return fmt.Errorf("creating schema inventory: %w", err)
	}
	p, err := saga.NewParticipant(ctx, saga.Options{
		Brokers: strings.Split(brokers, ","), Service: "inventory", DBURL: url, DBSchema: "inventory",
		TopicPrefix: os.Getenv("SAGA_TOPIC_PREFIX"), KeyFile: os.Getenv("SAGA_KEY_FILE"),
		InstanceID: os.Getenv("SAGA_INSTANCE_ID"), Logger: slog.New(slog.NewTextHandler(os.Stderr, nil)),
	})
	if err != nil {
		return err
	}
	defer p.Close()
	p.OnAction("reserve_stock", reserveStock)
	p.OnCompensation("release_stock", releaseStock)
	fmt.Fprintln(os.Stderr, "inventory-go: ready")
	err = p.Run(ctx)
	s := p.Stats()
	fmt.Fprintf(os.Stderr, "inventory-go: stopped: %d handled, %d duplicates, %d null compensations, %d hanging refused, %d malformed, %d dead-lettered\n",
		s.Handled, s.Duplicates, s.NullCompensations, s.HangingRefused, s.Malformed, s.DeadLettered)
	return err
}
