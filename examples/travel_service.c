/* The travel services of the trip saga: one program, run once per service.
 * `flight`, `hotel` and `car` book and cancel a number of units of an
 * item (seats on a flight, rooms in a hotel, cars of a class) from their
 * own inventory; `itinerary` confirms the trip once it is paid for. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "example_common.h"

/* One bookable kind: its service (and schema) name, its handlers' names
 * and the prefix of its booking references. */
typedef struct travel_kind {
    const char *service;
    const char *book;
    const char *cancel;
    const char *ref_prefix;
    const char *program; /* for usage */
} travel_kind;

static const travel_kind kinds[] = {
    {"flight", "book_flight", "cancel_flight", "FL", "travel-service flight"},
    {"hotel", "book_hotel", "cancel_hotel", "HO", "travel-service hotel"},
    {"car", "book_car", "cancel_car", "CA", "travel-service car"},
};

static const char booking_sql[] =
    "CREATE TABLE IF NOT EXISTS inventory ("
    " item text PRIMARY KEY, available int NOT NULL CHECK (available >= 0));"
    "CREATE TABLE IF NOT EXISTS bookings ("
    " saga_id uuid PRIMARY KEY, ref text NOT NULL UNIQUE, item text NOT NULL,"
    " quantity int NOT NULL, traveller text NOT NULL,"
    " status text NOT NULL CHECK (status IN ('booked', 'cancelled')),"
    " created_at timestamptz NOT NULL DEFAULT now(), cancelled_at timestamptz);";

static const char itinerary_sql[] =
    "CREATE TABLE IF NOT EXISTS trips ("
    " saga_id uuid PRIMARY KEY, traveller text NOT NULL, flight text NOT NULL,"
    " hotel text NOT NULL, car text NOT NULL, charge_id text NOT NULL,"
    " status text NOT NULL CHECK (status = 'confirmed'),"
    " confirmed_at timestamptz NOT NULL DEFAULT now());";

/* Take quantity units of item, if that many are left. */
static void book(const saga_command *cmd, PGconn *db, saga_result *res, void *arg)
{
    const travel_kind *k = arg;
    const char *item, *traveller;
    long long qty, available;
    char qbuf[24], ref[48];
    int ok = 1;
    PGresult *r;

    if (example_begin(cmd, db, res))
        return;
    if ((item = example_str(cmd, cmd->payload, "item", res)) == NULL ||
        (traveller = example_str(cmd, cmd->payload, "traveller", res)) == NULL)
        return;
    qty = example_int(cmd, cmd->payload, "quantity", res, &ok);
    if (!ok)
        return;
    snprintf(qbuf, sizeof qbuf, "%lld", qty);
    /* The saga id makes the reference unique and stable across redeliveries. */
    snprintf(ref, sizeof ref, "%s-%s", k->ref_prefix, cmd->saga_id);
    {
        const char *p[1] = {item};
        r = example_sql(
            db, res, "SELECT available FROM inventory WHERE item = $1 FOR UPDATE", 1, p);
    }
    if (r == NULL)
        return;
    if (PQntuples(r) == 0) {
        PQclear(r);
        saga_result_fail(res, "unknown_item", "%s: no %s \"%s\"", cmd->action, k->service,
                         item);
        return;
    }
    available = atoll(PQgetvalue(r, 0, 0));
    PQclear(r);
    if (available < qty) {
        saga_result_fail(res, "sold_out", "%s \"%s\": %lld left, %lld wanted", k->service,
                         item, available, qty);
        return;
    }
    {
        const char *p[2] = {item, qbuf};
        r = example_sql(db, res,
                        "UPDATE inventory SET available = available - $2 WHERE item = $1",
                        2, p);
    }
    if (r == NULL)
        return;
    PQclear(r);
    {
        const char *p[5] = {cmd->saga_id, ref, item, qbuf, traveller};
        r = example_sql(db, res,
                        "INSERT INTO bookings (saga_id, ref, item, quantity, traveller,"
                        " status) VALUES ($1, $2, $3, $4, $5, 'booked')",
                        5, p);
    }
    if (r == NULL)
        return;
    PQclear(r);
    saga_result_ok(res, json_pack("{s:s, s:s, s:I}", "booking_ref", ref, "item", item,
                                  "quantity", (json_int_t)qty));
}

/* Give back what this saga booked, if anything: by saga id, so it works
 * when the booking's reply was lost or the booking never happened. */
static void cancel(const saga_command *cmd, PGconn *db, saga_result *res, void *arg)
{
    (void)arg;
    example_undo(
        cmd, db, res,
        "WITH c AS (UPDATE bookings SET status = 'cancelled', cancelled_at = now()"
        "  WHERE saga_id = $1 AND status = 'booked' RETURNING item, quantity)"
        " UPDATE inventory i SET available = i.available + c.quantity FROM c"
        " WHERE i.item = c.item RETURNING c.quantity",
        "cancelled");
}

/* After the payment (the pivot): record the trip. Never compensated. */
static void confirm_trip(const saga_command *cmd, PGconn *db, saga_result *res, void *arg)
{
    static const char *const keys[] = {"traveller", "flight", "hotel", "car",
                                       "charge_id"};
    const char *p[6] = {cmd->saga_id};
    PGresult *r;
    (void)arg;

    if (example_begin(cmd, db, res))
        return;
    for (int i = 0; i < 5; i++)
        if ((p[i + 1] = example_str(cmd, cmd->payload, keys[i], res)) == NULL)
            return;
    r = example_sql(
        db, res,
        "INSERT INTO trips (saga_id, traveller, flight, hotel, car, charge_id,"
        " status) VALUES ($1, $2, $3, $4, $5, $6, 'confirmed')",
        6, p);
    if (r == NULL)
        return;
    PQclear(r);
    saga_result_ok(
        res, json_pack("{s:s, s:s}", "trip_id", cmd->saga_id, "status", "confirmed"));
}

static int usage(FILE *out)
{
    fprintf(out, "usage: travel-service flight|hotel|car|itinerary [--brokers B] "
                 "[--db URL] [--prefix P]\n"
                 "The example participants of the trip saga (sagas/trip.json): run "
                 "once per service.\n");
    return out == stdout ? 0 : 2;
}

int main(int argc, char **argv)
{
    const char *which = argc > 1 ? argv[1] : "";
    example_handler handlers[2];
    example_service svc = {0};

    if (strcmp(which, "--help") == 0 || strcmp(which, "-h") == 0)
        return usage(stdout);
    if (strcmp(which, "itinerary") == 0) {
        handlers[0] =
            (example_handler){SAGA_PHASE_INVOKE, "confirm_trip", confirm_trip, NULL};
        svc = (example_service){"itinerary", "itinerary", itinerary_sql,
                                handlers,    1,           "travel-service itinerary"};
    }
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (strcmp(which, kinds[i].service) == 0) {
            const travel_kind *k = &kinds[i];
            handlers[0] = (example_handler){SAGA_PHASE_INVOKE, k->book, book, (void *)k};
            handlers[1] =
                (example_handler){SAGA_PHASE_COMPENSATE, k->cancel, cancel, (void *)k};
            svc = (example_service){k->service, k->service, booking_sql,
                                    handlers,   2,          k->program};
        }
    if (svc.service == NULL) {
        if (which[0] != '\0')
            fprintf(stderr, "travel-service: unknown service \"%s\"\n", which);
        return usage(stderr);
    }
    /* example_main parses the rest as if the service were argv[0]. */
    return example_main(&svc, argc - 1, argv + 1);
}
