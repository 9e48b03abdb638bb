package saga

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// BarrierTableSQL creates the barrier table: the same table, columns and
// key as libsaga's (sdk/src/saga_barrier.c, migrations/participant/
// barrier.sql), so that a C and a Go instance of one service can share one
// database. The participant runs it when the table is missing. Rows are
// keyed (saga_id, step, element, phase): a command of version 1 is
// element 0 (a step either fans out or not).
const BarrierTableSQL = `CREATE TABLE IF NOT EXISTS saga_barrier (
    saga_id uuid NOT NULL,
    step int NOT NULL,
    phase text NOT NULL CHECK (phase IN ('invoke','compensate')),
    command_id text NOT NULL,
    outcome text NOT NULL,
    reply jsonb,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    element int NOT NULL DEFAULT 0,
    PRIMARY KEY (saga_id, step, element, phase)
)`

// BarrierUpgradeSQL upgrades a barrier table made before libsaga 0.5.0 (no
// "element" column) in place: migrations/participant/barrier_element.sql
// without its comments. Idempotent. The participant runs it, in one
// transaction, when its role owns the table.
const BarrierUpgradeSQL = `DO $$
DECLARE
    pk name;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'saga_barrier'::regclass
               AND attname = 'element' AND NOT attisdropped) THEN
        RETURN;
    END IF;
    LOCK TABLE saga_barrier IN ACCESS EXCLUSIVE MODE;
    IF EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'saga_barrier'::regclass
               AND attname = 'element' AND NOT attisdropped) THEN
        RETURN;
    END IF;
    ALTER TABLE saga_barrier ADD COLUMN element int NOT NULL DEFAULT 0;
    SELECT conname INTO pk FROM pg_constraint
     WHERE conrelid = 'saga_barrier'::regclass AND contype = 'p';
    IF pk IS NOT NULL THEN
        EXECUTE format('ALTER TABLE saga_barrier DROP CONSTRAINT %I', pk);
    END IF;
    ALTER TABLE saga_barrier ADD PRIMARY KEY (saga_id, step, element, phase);
END
$$`

// barrierInit creates the barrier table when missing (in the pool's
// search_path), or upgrades one of an earlier release: in one transaction
// when this role owns it, else an error naming the script its owner must
// run. Where the owner made the table (migrations/participant/barrier.sql)
// and the service's role may not create tables, it only looks.
func barrierInit(ctx context.Context, pool *pgxpool.Pool) error {
	var exists bool
	if err := pool.QueryRow(ctx, "SELECT to_regclass('saga_barrier') IS NOT NULL").Scan(&exists); err != nil {
		return fmt.Errorf("cannot connect to PostgreSQL: %w", err)
	}
	if !exists {
		if _, err := pool.Exec(ctx, BarrierTableSQL); err != nil {
			return fmt.Errorf("creating the barrier table saga_barrier: %w", err)
		}
		return nil
	}
	var missing, may bool
	var schema, role string
	if err := pool.QueryRow(ctx, `SELECT NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = c.oid
  AND attname = 'element' AND NOT attisdropped),
 pg_has_role(c.relowner, 'USAGE'), c.relnamespace::regnamespace::text, current_user::text
 FROM pg_class c WHERE c.oid = to_regclass('saga_barrier')`).Scan(&missing, &may, &schema, &role); err != nil {
		return fmt.Errorf("reading the barrier table's columns: %w", err)
	}
	if !missing {
		return nil
	}
	if !may {
		return fmt.Errorf("the barrier table %s.saga_barrier predates fan-out elements (it has no column \"element\") "+
			"and role %s may not alter it: its owner must run migrations/participant/barrier_element.sql in schema %s",
			schema, role, schema)
	}
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, BarrierUpgradeSQL)
		return err
	})
	if err != nil {
		return fmt.Errorf("upgrading the barrier table %s.saga_barrier for fan-out elements failed "+
			"(its owner can run migrations/participant/barrier_element.sql): %w", schema, err)
	}
	return nil
}

// The outcome words in the barrier's outcome column, as libsaga's.
const (
	outcomeHandled  = "handled"
	outcomeBlocked  = "blocked"
	outcomeNullComp = "null_compensation"
)

type verdict int

const (
	proceed   verdict = iota // first delivery: run the handler
	duplicate                // seen before: answer with the cached reply
	nullComp                 // compensation of an action that never ran (or failed)
	hanging                  // action arriving after its compensation
)

func (v verdict) String() string {
	return [...]string{"proceed", "duplicate", "null compensation", "hanging action"}[v]
}

const (
	sqlClaim = `INSERT INTO saga_barrier (saga_id, step, element, phase, command_id, outcome)
 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING`
	sqlLookup = `SELECT outcome, reply::text FROM saga_barrier
 WHERE saga_id = $1 AND step = $2 AND element = $3 AND phase = $4`
	sqlRecord = `INSERT INTO saga_barrier (saga_id, step, element, phase, command_id, outcome, reply)
 VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb) ON CONFLICT DO NOTHING`
)

// barrierElement is the element cmd's rows are keyed on: its element for a
// command of version 2, else 0.
func barrierElement(cmd *Command) int {
	if cmd.IsElement() {
		return cmd.Element
	}
	return 0
}

func claim(ctx context.Context, tx pgx.Tx, cmd *Command, phase Phase, commandID, outcome string) (bool, error) {
	tag, err := tx.Exec(ctx, sqlClaim, cmd.SagaID, cmd.Step, barrierElement(cmd), string(phase), commandID, outcome)
	if err != nil {
		return false, fmt.Errorf("barrier insert: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// lookup reads a row's outcome and reply; outcome is nil when there is no
// row.
func lookup(ctx context.Context, tx pgx.Tx, cmd *Command, phase Phase) (outcome, reply *string, err error) {
	var o string
	err = tx.QueryRow(ctx, sqlLookup, cmd.SagaID, cmd.Step, barrierElement(cmd), string(phase)).Scan(&o, &reply)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("barrier lookup: %w", err)
	}
	return &o, reply, nil
}

// seen tells whether cmd's own row exists: duplicate (cached its reply's
// JSON text, nil if none), hanging (an action its compensation blocked),
// or proceed when there is none.
func seen(ctx context.Context, tx pgx.Tx, cmd *Command) (verdict, *string, error) {
	outcome, reply, err := lookup(ctx, tx, cmd, cmd.Phase)
	switch {
	case err != nil:
		return 0, nil, err
	case outcome == nil:
		return proceed, nil, nil
	case cmd.Phase == Invoke && *outcome == outcomeBlocked:
		return hanging, nil, nil
	}
	return duplicate, reply, nil
}

// barrierEnter classifies cmd by its barrier row, inside tx. On duplicate,
// cached is the stored reply's JSON text (nil if none). The own row is only
// read here: barrierRecord writes it once, with the reply (one write per
// command, not a claim and then an update). A compensation whose action
// never ran claims the action's row (blocked), so that the action, arriving
// late, is refused.
func barrierEnter(ctx context.Context, tx pgx.Tx, cmd *Command) (verdict, *string, error) {
	v, cached, err := seen(ctx, tx, cmd)
	if err != nil || v != proceed || cmd.Phase == Invoke {
		return v, cached, err
	}
	// A compensation: did the action (of the same element) run? If its row
	// can be claimed, it did not, and from now on it never will (the row
	// blocks it).
	element := -1
	if cmd.IsElement() {
		element = cmd.Element
	}
	inserted, err := claim(ctx, tx, cmd, Invoke, FormatElementCommandID(cmd.SagaID, cmd.Step, Invoke, element), outcomeBlocked)
	if err != nil {
		return 0, nil, err
	}
	if inserted {
		return nullComp, nil, nil
	}
	// The action ran. If it ended in a definite failure there is nothing to
	// undo either: its writes were rolled back.
	_, reply, err := lookup(ctx, tx, cmd, Invoke)
	if err != nil {
		return 0, nil, err
	}
	if reply != nil {
		var st struct {
			Status string `json:"status"`
		}
		if json.Unmarshal([]byte(*reply), &st) == nil && st.Status == string(StatusOK) {
			return proceed, nil, nil
		}
	}
	return nullComp, nil, nil
}

// barrierRecord writes cmd's row, inside tx after the handler, with the
// reply sent and the outcome word, and gives proceed. When another delivery
// of cmd (or, for an action, its compensation) wrote the row first, while
// the handler ran, nothing is written and the verdict is duplicate (cached
// the row's reply) or hanging: the caller then rolls back this run's
// writes and answers as for that verdict. Database effects stay once
// either way; only the handler ran twice, which is why barrierEnter reads
// first.
func barrierRecord(ctx context.Context, tx pgx.Tx, cmd *Command, reply []byte, outcome string) (verdict, *string, error) {
	tag, err := tx.Exec(ctx, sqlRecord, cmd.SagaID, cmd.Step, barrierElement(cmd), string(cmd.Phase),
		cmd.CommandID, outcome, string(reply))
	if err != nil {
		return 0, nil, fmt.Errorf("barrier record: %w", err)
	}
	if tag.RowsAffected() == 1 {
		return proceed, nil, nil
	}
	// The INSERT waited for the other row's transaction to commit: in READ
	// COMMITTED the lookup (a statement of its own) sees it.
	v, cached, err := seen(ctx, tx, cmd)
	if err == nil && v == proceed {
		err = fmt.Errorf("barrier record: the row of %s neither inserted nor found", cmd.CommandID)
	}
	return v, cached, err
}
