/* The shipping service: books a courier and schedules the pickup for an
 * order — the steps of sagas/shipping.json, which sagas/cart.json runs as
 * a child saga. A pickup of more than 50 parcels is refused (a definite
 * failure: the child undoes the courier, and the cart its own steps). */
#include <stdio.h>
#include <stdlib.h>

#include "example_common.h"

#define MAX_PARCELS 50

static const char schema_sql[] =
    "CREATE TABLE IF NOT EXISTS shipments ("
    " saga_id uuid PRIMARY KEY, order_id text NOT NULL, parcels int NOT NULL,"
    " courier text NOT NULL, status text NOT NULL CHECK (status IN ('booked', "
    "'cancelled')),"
    " created_at timestamptz NOT NULL DEFAULT now(), cancelled_at timestamptz);"
    "CREATE TABLE IF NOT EXISTS pickups ("
    " saga_id uuid PRIMARY KEY, order_id text NOT NULL, courier text NOT NULL,"
    " status text NOT NULL CHECK (status IN ('scheduled', 'cancelled')),"
    " created_at timestamptz NOT NULL DEFAULT now(), cancelled_at timestamptz);";

static void book_courier(const saga_command *cmd, PGconn *db, saga_result *res, void *arg)
{
    const char *order_id, *courier;
    long long parcels;
    char pbuf[24];
    int ok = 1;
    PGresult *r;
    (void)arg;

    if (example_begin(cmd, db, res))
        return;
    if ((order_id = example_str(cmd, cmd->payload, "order_id", res)) == NULL)
        return;
    parcels = example_int(cmd, cmd->payload, "parcels", res, &ok);
    if (!ok)
        return;
    courier = parcels > 20 ? "freight" : "parcel-post";
    snprintf(pbuf, sizeof pbuf, "%lld", parcels);
    {
        const char *p[4] = {cmd->saga_id, order_id, pbuf, courier};
        r = example_sql(
            db, res,
            "INSERT INTO shipments (saga_id, order_id, parcels, courier, status)"
            " VALUES ($1, $2, $3, $4, 'booked')",
            4, p);
    }
    if (r == NULL)
        return;
    PQclear(r);
    saga_result_ok(res,
                   json_pack("{s:s, s:s}", "courier", courier, "shipment", cmd->saga_id));
}

static void cancel_courier(const saga_command *cmd, PGconn *db, saga_result *res,
                           void *arg)
{
    (void)arg;
    example_undo(cmd, db, res,
                 "UPDATE shipments SET status = 'cancelled', cancelled_at = now()"
                 " WHERE saga_id = $1 AND status = 'booked' RETURNING 1",
                 "cancelled");
}

static void schedule_pickup(const saga_command *cmd, PGconn *db, saga_result *res,
                            void *arg)
{
    const char *order_id, *courier;
    long long parcels;
    int ok = 1;
    PGresult *r;
    (void)arg;

    if (example_begin(cmd, db, res))
        return;
    if ((order_id = example_str(cmd, cmd->payload, "order_id", res)) == NULL ||
        (courier = example_str(cmd, cmd->payload, "courier", res)) == NULL)
        return;
    parcels = example_int(cmd, cmd->payload, "parcels", res, &ok);
    if (!ok)
        return;
    if (parcels > MAX_PARCELS) {
        saga_result_fail(res, "too_many_parcels",
                         "%lld parcels in one pickup; a courier takes at most %d",
                         parcels, MAX_PARCELS);
        return;
    }
    {
        const char *p[3] = {cmd->saga_id, order_id, courier};
        r = example_sql(db, res,
                        "INSERT INTO pickups (saga_id, order_id, courier, status)"
                        " VALUES ($1, $2, $3, 'scheduled')",
                        3, p);
    }
    if (r == NULL)
        return;
    PQclear(r);
    saga_result_ok(res,
                   json_pack("{s:s, s:s}", "courier", courier, "pickup", "scheduled"));
}

static void cancel_pickup(const saga_command *cmd, PGconn *db, saga_result *res,
                          void *arg)
{
    (void)arg;
    example_undo(cmd, db, res,
                 "UPDATE pickups SET status = 'cancelled', cancelled_at = now()"
                 " WHERE saga_id = $1 AND status = 'scheduled' RETURNING 1",
                 "cancelled");
}

int main(int argc, char **argv)
{
    static const example_handler handlers[] = {
        {SAGA_PHASE_INVOKE, "book_courier", book_courier, NULL},
        {SAGA_PHASE_COMPENSATE, "cancel_courier", cancel_courier, NULL},
        {SAGA_PHASE_INVOKE, "schedule_pickup", schedule_pickup, NULL},
        {SAGA_PHASE_COMPENSATE, "cancel_pickup", cancel_pickup, NULL},
    };
    static const example_service svc = {"shipping", "shipping", schema_sql,
                                        handlers,   4,          NULL};
    return example_main(&svc, argc, argv);
}
