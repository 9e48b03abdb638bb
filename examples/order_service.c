/* The order service: creates orders (pending), approves or cancels them. */
#include <stdio.h>
#include <stdlib.h>

#include "example_common.h"

static const char schema_sql[] =
    "CREATE TABLE IF NOT EXISTS orders ("
    " id uuid PRIMARY KEY DEFAULT gen_random_uuid(),"
    " saga_id uuid NOT NULL UNIQUE,"
    " customer_id text NOT NULL, sku text NOT NULL,"
    " quantity int NOT NULL, amount bigint NOT NULL,"
    " status text NOT NULL CHECK (status IN ('pending', 'approved', 'cancelled')),"
    " created_at timestamptz NOT NULL DEFAULT now(),"
    " updated_at timestamptz NOT NULL DEFAULT now());";

static void create_order(const saga_command *cmd, PGconn *db, saga_result *res, void *arg)
{
    const char *customer, *sku;
    long long qty, amount;
    char qbuf[24], abuf[24];
    int ok = 1;
    PGresult *r;
    (void)arg;

    if (example_begin(cmd, db, res))
        return;
    if ((customer = example_str(cmd, cmd->payload, "customer_id", res)) == NULL ||
        (sku = example_str(cmd, cmd->payload, "sku", res)) == NULL)
        return;
    qty = example_int(cmd, cmd->payload, "quantity", res, &ok);
    if (ok)
        amount = example_int(cmd, cmd->payload, "amount", res, &ok);
    if (!ok)
        return;
    snprintf(qbuf, sizeof qbuf, "%lld", qty);
    snprintf(abuf, sizeof abuf, "%lld", amount);
    {
        const char *p[5] = {cmd->saga_id, customer, sku, qbuf, abuf};
        r = example_sql(
            db, res,
            "INSERT INTO orders (saga_id, customer_id, sku, quantity, amount, status)"
            " VALUES ($1, $2, $3, $4, $5, 'pending') RETURNING id",
            5, p);
    }
    if (r == NULL)
        return;
    saga_result_ok(res, json_pack("{s:s}", "order_id", PQgetvalue(r, 0, 0)));
    PQclear(r);
}

/* Cancel by saga id: works even when the create_order reply was lost and
 * this compensation does not know the order id; nothing to cancel is fine. */
static void cancel_order(const saga_command *cmd, PGconn *db, saga_result *res, void *arg)
{
    const char *p[1] = {cmd->saga_id};
    PGresult *r;
    (void)arg;

    if (example_begin(cmd, db, res))
        return;
    r = example_sql(db, res,
                    "UPDATE orders SET status = 'cancelled', updated_at = now()"
                    " WHERE saga_id = $1 AND status = 'pending'",
                    1, p);
    if (r == NULL)
        return;
    saga_result_ok(res, json_pack("{s:i}", "cancelled", atoi(PQcmdTuples(r))));
    PQclear(r);
}

static void approve_order(const saga_command *cmd, PGconn *db, saga_result *res,
                          void *arg)
{
    const char *order_id, *p[1];
    PGresult *r;
    (void)arg;

    if (example_begin(cmd, db, res))
        return;
    if ((order_id = example_str(cmd, cmd->payload, "order_id", res)) == NULL)
        return;
    p[0] = order_id;
    r = example_sql(db, res,
                    "UPDATE orders SET status = 'approved', updated_at = now()"
                    " WHERE id::text = $1 AND status = 'pending' RETURNING id",
                    1, p);
    if (r == NULL)
        return;
    if (PQntuples(r) == 0)
        saga_result_fail(res, "not_pending", "order %s does not exist or is not pending",
                         order_id);
    else
        saga_result_ok(
            res, json_pack("{s:s, s:s}", "order_id", order_id, "status", "approved"));
    PQclear(r);
}

int main(int argc, char **argv)
{
    static const example_handler handlers[] = {
        {SAGA_PHASE_INVOKE, "create_order", create_order, NULL},
        {SAGA_PHASE_COMPENSATE, "cancel_order", cancel_order, NULL},
        {SAGA_PHASE_INVOKE, "approve_order", approve_order, NULL},
    };
    static const example_service svc = {"order", "orders", schema_sql, handlers, 3, NULL};
    return example_main(&svc, argc, argv);
}
