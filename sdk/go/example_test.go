package saga_test

import (
	"context"
	"log"
	"os"
	"os/signal"

	"github.com/jackc/pgx/v5"
	saga "github.com/sagad/saga-go"
)

// A payment participant: reserve_credit and its compensation release_credit,
// each in the barrier's transaction on the service's own PostgreSQL.
func Example() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	p, err := saga.NewParticipant(ctx, saga.Options{
		Brokers: []string{os.Getenv("SAGA_KAFKA_BROKERS")},
		Service: "payment",
		DBURL:   os.Getenv("SAGA_PG_URL"), DBSchema: "payment",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()
	p.OnAction("reserve_credit", func(ctx context.Context, tx pgx.Tx, c *saga.Command) saga.Result {
		var in struct {
			Customer string `json:"customer_id"`
			Amount   int64  `json:"amount"`
		}
		if err := c.Bind(&in); err != nil || in.Amount <= 0 {
			return saga.Fail("bad_input", "customer_id and a positive amount are needed")
		}
		tag, err := tx.Exec(ctx, `UPDATE customers SET reserved = reserved + $2
			WHERE id = $1 AND credit_limit - reserved >= $2`, in.Customer, in.Amount)
		switch {
		case err != nil:
			return saga.Retry(0, "database: %v", err) // rolled back; sagad tries again
		case tag.RowsAffected() == 0:
			return saga.Fail("insufficient_credit", "%s cannot reserve %d", in.Customer, in.Amount)
		}
		return saga.OK(map[string]any{"customer_id": in.Customer, "amount": in.Amount})
	})
	p.OnCompensation("release_credit", func(ctx context.Context, tx pgx.Tx, c *saga.Command) saga.Result {
		var in struct { // {"input": the action's input, "output": its output}
			Output struct {
				Customer string `json:"customer_id"`
				Amount   int64  `json:"amount"`
			} `json:"output"`
		}
		if err := c.Bind(&in); err != nil {
			return saga.Fail("bad_input", "%v", err)
		}
		if _, err := tx.Exec(ctx, `UPDATE customers SET reserved = reserved - $2 WHERE id = $1`,
			in.Output.Customer, in.Output.Amount); err != nil {
			return saga.Retry(0, "database: %v", err)
		}
		return saga.OK(nil)
	})
	if err := p.Run(ctx); err != nil { // nil after Ctrl-C: the batch in hand answered
		log.Fatal(err)
	}
}
