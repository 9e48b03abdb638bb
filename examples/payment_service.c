/* The payment service: reserves and releases customers' credit (the order
 * saga), and charges it (the trip saga's pivot). */
#include <stdio.h>
#include <stdlib.h>

#include "example_common.h"

static const char schema_sql[] =
    "CREATE TABLE IF NOT EXISTS customers ("
    " id text PRIMARY KEY, credit_limit bigint NOT NULL CHECK (credit_limit >= 0),"
    " reserved bigint NOT NULL DEFAULT 0,"
    " CHECK (reserved >= 0 AND reserved <= credit_limit));"
    "CREATE TABLE IF NOT EXISTS reservations ("
    " saga_id uuid PRIMARY KEY, order_id text NOT NULL, customer_id text NOT NULL,"
    " amount bigint NOT NULL, status text NOT NULL CHECK (status IN ('reserved', "
    "'released')),"
    " created_at timestamptz NOT NULL DEFAULT now(), released_at timestamptz);"
    "CREATE TABLE IF NOT EXISTS charges ("
    " saga_id uuid PRIMARY KEY, customer_id text NOT NULL, amount bigint NOT NULL,"
    " reference text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());";

static void reserve_credit(const saga_command *cmd, PGconn *db, saga_result *res,
                           void *arg)
{
    const char *customer, *order_id;
    long long amount, limit, reserved;
    char abuf[24];
    int ok = 1;
    PGresult *r;
    (void)arg;

    if (example_begin(cmd, db, res))
        return;
    if ((customer = example_str(cmd, cmd->payload, "customer_id", res)) == NULL ||
        (order_id = example_str(cmd, cmd->payload, "order_id", res)) == NULL)
        return;
    amount = example_int(cmd, cmd->payload, "amount", res, &ok);
    if (!ok)
        return;
    snprintf(abuf, sizeof abuf, "%lld", amount);
    {
        const char *p[1] = {customer};
        r = example_sql(
            db, res,
            "SELECT credit_limit, reserved FROM customers WHERE id = $1 FOR UPDATE", 1,
            p);
    }
    if (r == NULL)
        return;
    if (PQntuples(r) == 0) {
        PQclear(r);
        saga_result_fail(res, "unknown_customer", "no customer \"%s\"", customer);
        return;
    }
    limit = atoll(PQgetvalue(r, 0, 0));
    reserved = atoll(PQgetvalue(r, 0, 1));
    PQclear(r);
    if (limit - reserved < amount) {
        saga_result_fail(res, "insufficient_credit",
                         "customer %s has %lld of %lld credit available, %lld needed",
                         customer, limit - reserved, limit, amount);
        return;
    }
    {
        const char *p[2] = {customer, abuf};
        r = example_sql(
            db, res, "UPDATE customers SET reserved = reserved + $2 WHERE id = $1", 2, p);
    }
    if (r == NULL)
        return;
    PQclear(r);
    {
        const char *p[4] = {cmd->saga_id, order_id, customer, abuf};
        r = example_sql(
            db, res,
            "INSERT INTO reservations (saga_id, order_id, customer_id, amount, status)"
            " VALUES ($1, $2, $3, $4, 'reserved')",
            4, p);
    }
    if (r == NULL)
        return;
    PQclear(r);
    saga_result_ok(res, json_pack("{s:s, s:I}", "reservation_id", cmd->saga_id, "amount",
                                  (json_int_t)amount));
}

/* Give back what this saga reserved, if anything. */
static void release_credit(const saga_command *cmd, PGconn *db, saga_result *res,
                           void *arg)
{
    (void)arg;
    example_undo(
        cmd, db, res,
        "WITH rel AS (UPDATE reservations SET status = 'released', released_at = now()"
        "  WHERE saga_id = $1 AND status = 'reserved'"
        "  RETURNING customer_id, amount)"
        " UPDATE customers c SET reserved = c.reserved - rel.amount FROM rel"
        " WHERE c.id = rel.customer_id RETURNING rel.amount",
        "released");
}

/* Spend credit for good: the trip saga's pivot, which has no compensation
 * (a refund would be a business process of its own). A charge lowers the
 * customer's credit limit by the amount, if that much is not reserved. */
static void charge(const saga_command *cmd, PGconn *db, saga_result *res, void *arg)
{
    const char *customer, *reference;
    long long amount;
    char abuf[24];
    int ok = 1;
    PGresult *r;
    (void)arg;

    if (example_begin(cmd, db, res))
        return;
    if ((customer = example_str(cmd, cmd->payload, "customer_id", res)) == NULL ||
        (reference = example_str(cmd, cmd->payload, "reference", res)) == NULL)
        return;
    amount = example_int(cmd, cmd->payload, "amount", res, &ok);
    if (!ok)
        return;
    snprintf(abuf, sizeof abuf, "%lld", amount);
    {
        const char *p[2] = {customer, abuf};
        r = example_sql(db, res,
                        "UPDATE customers SET credit_limit = credit_limit - $2"
                        " WHERE id = $1 AND credit_limit - reserved >= $2"
                        " RETURNING credit_limit",
                        2, p);
    }
    if (r == NULL)
        return;
    if (PQntuples(r) == 0) {
        const char *p[1] = {customer};
        PQclear(r);
        r = example_sql(
            db, res, "SELECT credit_limit - reserved FROM customers WHERE id = $1", 1, p);
        if (r == NULL)
            return;
        if (PQntuples(r) == 0)
            saga_result_fail(res, "unknown_customer", "no customer \"%s\"", customer);
        else
            saga_result_fail(res, "insufficient_credit",
                             "customer %s has %s of credit available, %lld needed",
                             customer, PQgetvalue(r, 0, 0), amount);
        PQclear(r);
        return;
    }
    PQclear(r);
    {
        const char *p[4] = {cmd->saga_id, customer, abuf, reference};
        r = example_sql(db, res,
                        "INSERT INTO charges (saga_id, customer_id, amount, reference)"
                        " VALUES ($1, $2, $3, $4)",
                        4, p);
    }
    if (r == NULL)
        return;
    PQclear(r);
    saga_result_ok(res, json_pack("{s:s, s:I}", "charge_id", cmd->saga_id, "amount",
                                  (json_int_t)amount));
}

int main(int argc, char **argv)
{
    static const example_handler handlers[] = {
        {SAGA_PHASE_INVOKE, "reserve_credit", reserve_credit, NULL},
        {SAGA_PHASE_COMPENSATE, "release_credit", release_credit, NULL},
        {SAGA_PHASE_INVOKE, "charge", charge, NULL},
    };
    static const example_service svc = {"payment", "payment", schema_sql,
                                        handlers,  3,         NULL};
    return example_main(&svc, argc, argv);
}
