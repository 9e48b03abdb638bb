/* The inventory service: reserves and releases stock, for a whole order
 * (reserve_stock) or for one line of it (reserve_line, the action of a
 * fan-out step: one command per line). */
#include <stdio.h>
#include <stdlib.h>

#include "example_common.h"

static const char schema_sql[] =
    "CREATE TABLE IF NOT EXISTS stock ("
    " sku text PRIMARY KEY, available int NOT NULL CHECK (available >= 0));"
    "CREATE TABLE IF NOT EXISTS reservations ("
    " saga_id uuid PRIMARY KEY, order_id text NOT NULL, sku text NOT NULL,"
    " quantity int NOT NULL, status text NOT NULL CHECK (status IN ('reserved', "
    "'released')),"
    " created_at timestamptz NOT NULL DEFAULT now(), released_at timestamptz);"
    "CREATE TABLE IF NOT EXISTS line_reservations ("
    " saga_id uuid NOT NULL, line int NOT NULL, order_id text NOT NULL,"
    " sku text NOT NULL, quantity int NOT NULL,"
    " status text NOT NULL CHECK (status IN ('reserved', 'released')),"
    " created_at timestamptz NOT NULL DEFAULT now(), released_at timestamptz,"
    " PRIMARY KEY (saga_id, line));";

/* Take qty of sku off the shelf: 1, or 0 with res failed (no such
 * product, not enough of it, or the database). */
static int take_stock(PGconn *db, saga_result *res, const char *sku, const char *qbuf,
                      long long qty)
{
    const char *p[2] = {sku, qbuf};
    long long available;
    PGresult *r = example_sql(
        db, res, "SELECT available FROM stock WHERE sku = $1 FOR UPDATE", 1, p);
    if (r == NULL)
        return 0;
    if (PQntuples(r) == 0) {
        PQclear(r);
        saga_result_fail(res, "unknown_sku", "no product \"%s\"", sku);
        return 0;
    }
    available = atoll(PQgetvalue(r, 0, 0));
    PQclear(r);
    if (available < qty) {
        saga_result_fail(res, "insufficient_stock",
                         "%lld of \"%s\" in stock, %lld wanted", available, sku, qty);
        return 0;
    }
    r = example_sql(db, res, "UPDATE stock SET available = available - $2 WHERE sku = $1",
                    2, p);
    if (r == NULL)
        return 0;
    PQclear(r);
    return 1;
}

static void reserve_stock(const saga_command *cmd, PGconn *db, saga_result *res,
                          void *arg)
{
    const char *sku, *order_id;
    long long qty;
    char qbuf[24];
    int ok = 1;
    PGresult *r;
    (void)arg;

    if (example_begin(cmd, db, res))
        return;
    if ((sku = example_str(cmd, cmd->payload, "sku", res)) == NULL ||
        (order_id = example_str(cmd, cmd->payload, "order_id", res)) == NULL)
        return;
    qty = example_int(cmd, cmd->payload, "quantity", res, &ok);
    if (!ok)
        return;
    snprintf(qbuf, sizeof qbuf, "%lld", qty);
    if (!take_stock(db, res, sku, qbuf, qty))
        return;
    {
        const char *p[4] = {cmd->saga_id, order_id, sku, qbuf};
        r = example_sql(
            db, res,
            "INSERT INTO reservations (saga_id, order_id, sku, quantity, status)"
            " VALUES ($1, $2, $3, $4, 'reserved')",
            4, p);
    }
    if (r == NULL)
        return;
    PQclear(r);
    saga_result_ok(res, json_pack("{s:s, s:I}", "sku", sku, "reserved", (json_int_t)qty));
}

/* One line of an order: the element of a fan-out step, reserved on its
 * own (the barrier keeps each element's command apart). */
static void reserve_line(const saga_command *cmd, PGconn *db, saga_result *res, void *arg)
{
    const char *sku, *order_id;
    long long qty;
    char qbuf[24], lbuf[16];
    int ok = 1;
    PGresult *r;
    (void)arg;

    if (cmd->v != SAGA_PROTOCOL_VERSION_ELEMENTS) {
        saga_result_fail(res, "not_a_line",
                         "reserve_line reserves one line of an order: the step must "
                         "fan out over the lines (for_each)");
        return;
    }
    if (example_begin(cmd, db, res))
        return;
    if ((sku = example_str(cmd, cmd->payload, "sku", res)) == NULL ||
        (order_id = example_str(cmd, cmd->payload, "order_id", res)) == NULL)
        return;
    qty = example_int(cmd, cmd->payload, "quantity", res, &ok);
    if (!ok)
        return;
    snprintf(qbuf, sizeof qbuf, "%lld", qty);
    snprintf(lbuf, sizeof lbuf, "%d", cmd->element);
    if (!take_stock(db, res, sku, qbuf, qty))
        return;
    {
        const char *p[5] = {cmd->saga_id, lbuf, order_id, sku, qbuf};
        r = example_sql(db, res,
                        "INSERT INTO line_reservations (saga_id, line, order_id, sku,"
                        " quantity, status) VALUES ($1, $2, $3, $4, $5, 'reserved')",
                        5, p);
    }
    if (r == NULL)
        return;
    PQclear(r);
    saga_result_ok(res, json_pack("{s:i, s:s, s:I}", "line", cmd->element, "sku", sku,
                                  "reserved", (json_int_t)qty));
}

/* Put back what this line reserved, if anything. */
static void release_line(const saga_command *cmd, PGconn *db, saga_result *res, void *arg)
{
    char lbuf[16];
    const char *p[2] = {cmd->saga_id, lbuf};
    PGresult *r;
    (void)arg;
    if (example_begin(cmd, db, res))
        return;
    snprintf(lbuf, sizeof lbuf, "%d", cmd->element);
    r = example_sql(db, res,
                    "WITH rel AS (UPDATE line_reservations SET status = 'released',"
                    "  released_at = now() WHERE saga_id = $1 AND line = $2"
                    "  AND status = 'reserved' RETURNING sku, quantity)"
                    " UPDATE stock s SET available = s.available + rel.quantity FROM rel"
                    " WHERE s.sku = rel.sku RETURNING rel.quantity",
                    2, p);
    if (r == NULL)
        return;
    saga_result_ok(
        res, json_pack("{s:i, s:I}", "line", cmd->element, "released",
                       (json_int_t)(PQntuples(r) ? atoll(PQgetvalue(r, 0, 0)) : 0)));
    PQclear(r);
}

/* Put back what this saga reserved, if anything. */
static void release_stock(const saga_command *cmd, PGconn *db, saga_result *res,
                          void *arg)
{
    (void)arg;
    example_undo(
        cmd, db, res,
        "WITH rel AS (UPDATE reservations SET status = 'released', released_at = now()"
        "  WHERE saga_id = $1 AND status = 'reserved' RETURNING sku, quantity)"
        " UPDATE stock s SET available = s.available + rel.quantity FROM rel"
        " WHERE s.sku = rel.sku RETURNING rel.quantity",
        "released");
}

int main(int argc, char **argv)
{
    static const example_handler handlers[] = {
        {SAGA_PHASE_INVOKE, "reserve_stock", reserve_stock, NULL},
        {SAGA_PHASE_COMPENSATE, "release_stock", release_stock, NULL},
        {SAGA_PHASE_INVOKE, "reserve_line", reserve_line, NULL},
        {SAGA_PHASE_COMPENSATE, "release_line", release_line, NULL},
    };
    static const example_service svc = {"inventory", "inventory", schema_sql,
                                        handlers,    4,           NULL};
    return example_main(&svc, argc, argv);
}
