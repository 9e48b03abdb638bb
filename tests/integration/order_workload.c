/* The order workload (see order_workload.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <uuid.h>

#include "harness.h"
#include "order_workload.h"
#include "saga_batch.h"
#include "saga_machine.h"

void ow_seed(PGconn *db)
{
    it_exec(db, "INSERT INTO payment.customers (id, credit_limit, reserved)"
                " SELECT 'crash-c' || g, CASE WHEN g = 9 THEN 300 ELSE 100000000 END, 0"
                " FROM generate_series(0, 9) g"
                " ON CONFLICT (id) DO UPDATE SET credit_limit = EXCLUDED.credit_limit,"
                " reserved = 0;"
                "DELETE FROM payment.reservations r USING payment.customers c"
                " WHERE r.customer_id = c.id AND c.id LIKE 'crash-%';"
                "INSERT INTO inventory.stock (sku, available) VALUES"
                " ('crash-w', 100000), ('crash-g', 30)"
                " ON CONFLICT (sku) DO UPDATE SET available = EXCLUDED.available;"
                "DELETE FROM inventory.reservations WHERE sku LIKE 'crash-%'");
}

/* Create n sagas directly in the database, in one transaction. */
void ow_start_wave(PGconn *db, saga_defs *defs, const char *prefix, int n, int wave)
{
    const saga_definition *def;
    saga_store_opts so = {prefix, "crash-test"};
    saga_error err = {0};

    assert_int_equal(saga_store_get_definition(db, defs, "crash_order", 0, &def, &err),
                     0);
    /* Written as sagad writes a started saga (saga_batch), with outbox
     * rows that are nobody's, so any sagad sends them. */
    saga_batch *b = saga_batch_new(&so, NULL, 0);
    saga_outbox sent = {0};
    assert_non_null(b);
    assert_int_equal(saga_batch_prepare(db, &err), 0);
    it_exec(db, "BEGIN");
    for (int i = 0; i < n; i++) {
        uuid_t u;
        char key[64], existing[1][SAGA_ID_LEN + 1], id[SAGA_ID_LEN + 1];
        const char *keys[1] = {key};
        int k = wave * 1000 + i;
        saga_actions acts = {0};
        saga_event ev = {
            .kind = SAGA_EV_START, .now = saga_now_ms(), .random = 0.5, .reply = NULL};
        saga_state *s;
        json_t *input;
        /* One customer in ten has too little credit; one order in four
         * wants the scarce gadget, which runs out. */
        char customer[32];
        snprintf(customer, sizeof customer, "crash-c%d", k % 10 == 9 ? 9 : k % 9);
        input = json_pack("{s:s, s:s, s:i, s:i}", "customer_id", customer, "sku",
                          k % 4 == 3 ? "crash-g" : "crash-w", "quantity", 1 + k % 3,
                          "amount", 100 + (k * 37) % 400);
        uuid_generate_random(u);
        uuid_unparse_lower(u, id);
        s = saga_state_new(def, id, input);
        json_decref(input);
        assert_int_equal(saga_machine_apply(s, &ev, &acts, NULL), SAGA_APPLIED);
        snprintf(key, sizeof key, "%s%d", prefix, k);
        assert_int_equal(
            saga_batch_insert_new(db, &s, keys, NULL, NULL, 1, existing, &err), 0);
        assert_string_equal(existing[0], "");
        assert_int_equal(saga_batch_add(b, s, &acts, 1, &err), 0);
        saga_actions_clear(&acts);
        saga_state_free(s);
    }
    it_exec(db, "NOTIFY saga_outbox");
    assert_int_equal(saga_batch_commit(db, b, &sent, &err), 0);
    saga_outbox_clear(&sent);
    saga_batch_free(b);
}

long long ow_wait_all(PGconn *db, const char *prefix, int timeout_s)
{
    const char *p[1] = {prefix};
    long long open = -1;
    for (int waited = 0; waited <= timeout_s; waited++) {
        struct timespec ts = {1, 0};
        open = it_int(db,
                      "SELECT count(*) FROM saga.saga WHERE status IN"
                      " ('running', 'compensating') AND idempotency_key LIKE $1 || '%'",
                      1, p);
        if (open == 0)
            break;
        nanosleep(&ts, NULL);
    }
    return open;
}

void ow_check(PGconn *db, const char *prefix, long long expected, ow_counts *out)
{
    long long n, completed, compensated, failed, running;
    {
        const char *p[1] = {prefix};
#define COUNT(st)                                                                        \
    it_int(db,                                                                           \
           "SELECT count(*) FROM saga.saga WHERE status = '" st "'"                      \
           " AND idempotency_key LIKE $1 || '%'",                                        \
           1, p)
        completed = COUNT("completed");
        compensated = COUNT("compensated");
        failed = COUNT("failed");
        running = it_int(db,
                         "SELECT count(*) FROM saga.saga WHERE status IN ('running',"
                         " 'compensating') AND idempotency_key LIKE $1 || '%'",
                         1, p);
        n = completed + compensated + failed + running;
    }
    print_message("sagas %lld: %lld completed, %lld compensated, %lld failed, %lld "
                  "unfinished\n",
                  n, completed, compensated, failed, running);
    assert_int_equal(n, expected);
    assert_int_equal(running, 0);
    assert_int_equal(failed, 0);
    assert_true(completed > 0);
    assert_true(compensated > 0);

    /* Build the list of this run's sagas for the checks below. */
    {
        char sql[512];
        snprintf(sql, sizeof sql,
                 "DROP TABLE IF EXISTS crash_run; CREATE TEMP TABLE crash_run AS"
                 " SELECT id, status FROM saga.saga WHERE idempotency_key LIKE '%s%%'",
                 prefix);
        it_exec(db, sql);
    }
    /* Every completed saga: order approved, credit and stock reserved. */
    assert_int_equal(
        it_int(db,
               "SELECT count(*) FROM crash_run c WHERE c.status = 'completed' AND"
               " (NOT EXISTS (SELECT 1 FROM orders.orders o WHERE o.saga_id = c.id"
               "   AND o.status = 'approved')"
               " OR NOT EXISTS (SELECT 1 FROM payment.reservations r"
               "   WHERE r.saga_id = c.id AND r.status = 'reserved')"
               " OR NOT EXISTS (SELECT 1 FROM inventory.reservations r"
               "   WHERE r.saga_id = c.id AND r.status = 'reserved'))",
               0, NULL),
        0);
    /* Every compensated saga: nothing left reserved, no live order. */
    assert_int_equal(
        it_int(db,
               "SELECT count(*) FROM crash_run c WHERE c.status = 'compensated' AND"
               " (EXISTS (SELECT 1 FROM orders.orders o WHERE o.saga_id = c.id"
               "   AND o.status <> 'cancelled')"
               " OR EXISTS (SELECT 1 FROM payment.reservations r"
               "   WHERE r.saga_id = c.id AND r.status = 'reserved')"
               " OR EXISTS (SELECT 1 FROM inventory.reservations r"
               "   WHERE r.saga_id = c.id AND r.status = 'reserved'))",
               0, NULL),
        0);
    /* Balances agree with the reservations: nothing reserved twice or leaked. */
    assert_int_equal(
        it_int(db,
               "SELECT count(*) FROM payment.customers c WHERE c.id LIKE 'crash-%'"
               " AND c.reserved <> (SELECT coalesce(sum(amount), 0) FROM"
               " payment.reservations r WHERE r.customer_id = c.id"
               " AND r.status = 'reserved')",
               0, NULL),
        0);
    assert_int_equal(
        it_int(db,
               "SELECT count(*) FROM inventory.stock s WHERE s.sku LIKE 'crash-%'"
               " AND s.available + (SELECT coalesce(sum(quantity), 0) FROM"
               " inventory.reservations r WHERE r.sku = s.sku"
               " AND r.status = 'reserved')"
               " <> CASE s.sku WHEN 'crash-g' THEN 30 ELSE 100000 END",
               0, NULL),
        0);
    /* Each action took effect at most once per saga (a handler's log row
     * commits with its effect, so a double effect would show here). */
    assert_int_equal(
        it_int(db,
               "SELECT count(*) FROM (SELECT saga_id, action FROM ("
               " SELECT saga_id, action FROM orders.command_log"
               " UNION ALL SELECT saga_id, action FROM payment.command_log"
               " UNION ALL SELECT saga_id, action FROM inventory.command_log) x"
               " WHERE saga_id IN (SELECT id FROM crash_run)"
               " GROUP BY saga_id, action HAVING count(*) > 1) d",
               0, NULL),
        0);
    out->total = n;
    out->completed = completed;
    out->compensated = compensated;
    out->failed = failed;
    out->unfinished = running;
}

/* Sum "N <word>" figures from the "stopped:" lines of the logs named
 * pattern (a shell glob). */
long long ow_sum_stat(const char *pattern, const char *word)
{
    char cmd[1024], line[256];
    FILE *f;
    long long total = 0;
    snprintf(cmd, sizeof cmd,
             "cat %s/tests/logs/%s 2>/dev/null | grep -o '[0-9]* %s' | awk '{s+=$1} END "
             "{print s+0}'",
             it_env("SAGA_BUILD_DIR"), pattern, word);
    f = popen(cmd, "r");
    if (f != NULL && fgets(line, sizeof line, f) != NULL)
        total = atoll(line);
    if (f != NULL)
        pclose(f);
    return total;
}

const char *const ow_services[OW_NSVC] = {"order", "payment", "inventory"};

int ow_setup(const char *name, PGconn **db, char **prefix)
{
    const char *migrate[] = {"migrate", "--dir", "migrations", NULL};
    it_isolate_db(name);
    it_env("SAGA_KAFKA_BROKERS");
    *prefix = strdup(it_prefix(name));
    setenv("SAGA_TOPIC_PREFIX", *prefix, 1);
    if (it_sagactl(NULL, 0, migrate) != 0)
        return -1;
    *db = it_db();
    return 0;
}

void ow_start_service(it_proc *p, int i, const char *label, int n)
{
    char name[64], prog[64];
    const char *args[] = {NULL};
    snprintf(name, sizeof name, "%s-%s-%d", label, ow_services[i], n);
    snprintf(prog, sizeof prog, "%s-service", ow_services[i]);
    assert_int_equal(it_spawn(p, name, prog, args), 0);
    assert_int_equal(it_wait_log(p, "ready", 60000), 0);
}

void ow_stop_all(it_proc *procs, int n)
{
    for (int i = 0; i < n; i++)
        if (procs[i].pid > 0)
            it_stop(&procs[i]);
}
