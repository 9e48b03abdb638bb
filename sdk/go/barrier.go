package saga

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// BarrierTableSQL creates the barrier table: the same table, columns and
// key as libsaga's (sdk/src/saga_barrier.c, migrations/participant/
// barrier.sql), so that a C and a Go instance of one service can share one
// database. The participant runs it when the table is missing.
const BarrierTableSQL = `CREATE TABLE IF NOT EXISTS saga_barrier (
    saga_id uuid NOT NULL,
    step int NOT NULL,
    phase text NOT NULL CHECK (phase IN ('invoke','compensate')),
    command_id text NOT NULL,
    outcome text NOT NULL,
    reply jsonb,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (saga_id, step, phase)
)`

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
	sqlClaim = `INSERT INTO saga_barrier (saga_id, step, phase, command_id, outcome)
 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING`
	sqlLookup = `SELECT outcome, reply::text FROM saga_barrier
 WHERE saga_id = $1 AND step = $2 AND phase = $3`
	sqlRecord = `UPDATE saga_barrier SET reply = $4::jsonb, outcome = $5
 WHERE saga_id = $1 AND step = $2 AND phase = $3`
)

func claim(ctx context.Context, tx pgx.Tx, sagaID string, step int, phase Phase, commandID, outcome string) (bool, error) {
	tag, err := tx.Exec(ctx, sqlClaim, sagaID, step, string(phase), commandID, outcome)
	if err != nil {
		return false, fmt.Errorf("barrier insert: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

func lookup(ctx context.Context, tx pgx.Tx, sagaID string, step int, phase Phase) (outcome string, reply *string, err error) {
	err = tx.QueryRow(ctx, sqlLookup, sagaID, step, string(phase)).Scan(&outcome, &reply)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil, nil
	}
	if err != nil {
		return "", nil, fmt.Errorf("barrier lookup: %w", err)
	}
	return outcome, reply, nil
}

// barrierEnter classifies cmd and claims its barrier row, inside tx. On
// duplicate, cached is the stored reply's JSON text (nil if none).
func barrierEnter(ctx context.Context, tx pgx.Tx, cmd *Command) (verdict, *string, error) {
	inserted, err := claim(ctx, tx, cmd.SagaID, cmd.Step, cmd.Phase, cmd.CommandID, outcomeHandled)
	if err != nil {
		return 0, nil, err
	}
	if !inserted {
		outcome, reply, err := lookup(ctx, tx, cmd.SagaID, cmd.Step, cmd.Phase)
		if err != nil {
			return 0, nil, err
		}
		if cmd.Phase == Invoke && outcome == outcomeBlocked {
			return hanging, nil, nil
		}
		return duplicate, reply, nil
	}
	if cmd.Phase == Invoke {
		return proceed, nil, nil
	}
	// A compensation: did the action run? If its row can be claimed, it did
	// not, and from now on it never will (the row blocks it).
	inserted, err = claim(ctx, tx, cmd.SagaID, cmd.Step, Invoke, FormatCommandID(cmd.SagaID, cmd.Step, Invoke), outcomeBlocked)
	if err != nil {
		return 0, nil, err
	}
	if inserted {
		return nullComp, nil, nil
	}
	// The action ran. If it ended in a definite failure there is nothing to
	// undo either: its writes were rolled back.
	_, reply, err := lookup(ctx, tx, cmd.SagaID, cmd.Step, Invoke)
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

// barrierRecord stores the reply sent for cmd and the outcome word.
func barrierRecord(ctx context.Context, tx pgx.Tx, cmd *Command, reply []byte, outcome string) error {
	if _, err := tx.Exec(ctx, sqlRecord, cmd.SagaID, cmd.Step, string(cmd.Phase), string(reply), outcome); err != nil {
		return fmt.Errorf("barrier record: %w", err)
	}
	return nil
}
