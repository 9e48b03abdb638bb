/* Rule 1 through sagad: PostgreSQL is the single source of truth.
 *
 * - Commands committed but never confirmed sent (rows left in the outbox by
 *   a sagad killed after its COMMIT, or written by sagactl) and start
 *   requests written while no sagad runs are all sent when sagad starts:
 *   within seconds, as attempt 1, although every step's timeout is 10 min
 *   (tests/integration/outbox_sagas), so no timeout can be what sends them.
 * - A command leaves sagad only after the transition that causes it
 *   committed: a deferred trigger makes the COMMIT fail, and nothing
 *   reaches the participant until the COMMIT succeeds (for a saga's first
 *   command, from a start request, and for a later one, from a reply). */
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
#include "saga_machine.h"
#include "saga_batch.h"
#include "saga_store.h"

#define DEFS  "tests/integration/outbox_sagas"
#define OWNER "outbox-sagad"

enum { PER_GROUP = 10 };

static PGconn *db;
static char *prefix;
static it_proc svc[OW_NSVC], sagad;
static int sagad_starts;

static const char input[] =
    "{\"customer_id\":\"alice\",\"sku\":\"widget\",\"quantity\":1,\"amount\":10}";

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void start_sagad(void)
{
    char name[64];
    /* Always the same name: a restart takes back the rows it held. */
    const char *args[] = {"--definitions", DEFS, "--name", OWNER, NULL};
    snprintf(name, sizeof name, "outbox-sagad-%d", ++sagad_starts);
    assert_int_equal(it_spawn(&sagad, name, "sagad", args), 0);
    assert_int_equal(it_wait_log(&sagad, "sagad running", 60000), 0);
}

static int setup(void **state)
{
    const char *deploy[] = {"defs", "deploy", DEFS "/outbox_order.json", NULL};
    (void)state;
    if (ow_setup("outbox", &db, &prefix) != 0)
        return -1;
    for (int i = 0; i < OW_NSVC; i++)
        ow_start_service(&svc[i], i, "outbox", 1);
    it_exec_file(db, "examples/seed.sql");
    it_exec(db,
            "UPDATE inventory.stock SET available = 100000 WHERE sku = 'widget';"
            "UPDATE payment.customers SET credit_limit = 100000000 WHERE id = 'alice'");
    /* sagad is not running yet: the definition is stored by sagactl. */
    return it_sagactl(NULL, 0, deploy) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    ow_stop_all(&sagad, 1);
    ow_stop_all(svc, OW_NSVC);
    PQfinish(db);
    free(prefix);
    return 0;
}

/* Create n sagas and their first commands directly in the database, in
 * one transaction, with idempotency keys <prefix><group>-<i>: what a
 * transition leaves behind once committed. */
static void create_sagas(saga_defs *defs, const char *group, int n)
{
    const saga_definition *def;
    saga_store_opts so = {prefix, "test_outbox"};
    saga_error err = {0};
    assert_int_equal(saga_store_get_definition(db, defs, "outbox_order", 0, &def, &err),
                     0);
    /* Written as sagad writes a started saga (saga_batch), with outbox
     * rows that are nobody's. */
    saga_batch *b = saga_batch_new(&so, NULL, 0);
    saga_outbox sent = {0};
    assert_non_null(b);
    assert_int_equal(saga_batch_prepare(db, &err), 0);
    it_exec(db, "BEGIN");
    for (int i = 0; i < n; i++) {
        uuid_t u;
        char key[96], existing[1][SAGA_ID_LEN + 1], id[SAGA_ID_LEN + 1];
        const char *keys[1] = {key};
        saga_actions acts = {0};
        saga_event ev = {.kind = SAGA_EV_START, .now = saga_now_ms(), .random = 0.5};
        json_t *in = json_loads(input, 0, NULL);
        saga_state *s;
        uuid_generate_random(u);
        uuid_unparse_lower(u, id);
        s = saga_state_new(def, id, in);
        json_decref(in);
        assert_non_null(s);
        assert_int_equal(saga_machine_apply(s, &ev, &acts, NULL), SAGA_APPLIED);
        snprintf(key, sizeof key, "%s%s-%d", prefix, group, i);
        assert_int_equal(
            saga_batch_insert_new(db, &s, keys, NULL, NULL, 1, existing, &err), 0);
        assert_string_equal(existing[0], "");
        assert_int_equal(saga_batch_add(b, s, &acts, 1, &err), 0);
        saga_actions_clear(&acts);
        saga_state_free(s);
    }
    assert_int_equal(saga_batch_commit(db, b, &sent, &err), 0);
    assert_true(sent.n >= n); /* one command or more per saga started */
    saga_outbox_clear(&sent);
    saga_batch_free(b);
}

/* Set the outbox lease of the rows of group's sagas. */
static void lease_rows(const char *group, const char *owner, const char *until)
{
    char like[128];
    const char *p[3] = {owner, until, like};
    PGresult *r;
    snprintf(like, sizeof like, "%s%s-%%", prefix, group);
    r = PQexecParams(
        db,
        "UPDATE saga.outbox o SET claimed_by = $1,"
        " claimed_until = now() + $2::interval"
        " FROM saga.saga s WHERE s.id = o.saga_id AND s.idempotency_key LIKE $3",
        3, NULL, p, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    assert_int_equal(atoi(PQcmdTuples(r)), PER_GROUP);
    PQclear(r);
}

static long long count(const char *sql)
{
    const char *p[1] = {prefix};
    return it_int(db, sql, 1, p);
}

/* The run's sagas: those whose idempotency key starts with the prefix. */
#define RUN "(SELECT id FROM saga.saga WHERE idempotency_key LIKE $1 || '%')"
#define COMMAND_LOG                                                                      \
    "(SELECT saga_id, action, attempt FROM orders.command_log"                           \
    " UNION ALL SELECT saga_id, action, attempt FROM payment.command_log"                \
    " UNION ALL SELECT saga_id, action, attempt FROM inventory.command_log)"

static void test_left_in_the_outbox_is_sent_when_sagad_starts(void **state)
{
    enum { SAGAS = 4 * PER_GROUP };
    saga_defs *defs = saga_defs_new();
    time_t t0;
    long long open;
    (void)state;

    /* No sagad runs. Rows as sagactl writes them (no lease); as a sagad
     * named OWNER leaves them when killed between its COMMIT and Kafka's
     * confirmation (held by it, the lease still running for 10 min); as
     * another instance that died leaves them (lease run out). */
    create_sagas(defs, "free", PER_GROUP);
    create_sagas(defs, "held", PER_GROUP);
    lease_rows("held", OWNER, "10 minutes");
    create_sagas(defs, "gone", PER_GROUP);
    lease_rows("gone", "a-sagad-that-died", "-1 second");
    /* And start requests, which only sagad turns into sagas. */
    for (int i = 0; i < PER_GROUP; i++) {
        char key[96], out[64];
        const char *args[] = {"start", "outbox_order", "--no-wait", "--input",
                              input,   "--key",        key,         NULL};
        snprintf(key, sizeof key, "%srequest-%d", prefix, i);
        assert_int_equal(it_sagactl(out, sizeof out, args), 0);
        assert_int_equal(strlen(out), 36);
    }
    assert_int_equal(count("SELECT count(*) FROM saga.outbox WHERE saga_id IN " RUN),
                     3 * PER_GROUP);
    assert_int_equal(
        count("SELECT count(*) FROM " COMMAND_LOG " c WHERE saga_id IN " RUN), 0);

    t0 = time(NULL);
    start_sagad();
    /* Every step's timeout is 10 min: only the relay can be this quick. */
    open = -1;
    for (int waited = 0; waited < 600; waited++) {
        open = count("SELECT count(*) FROM saga.saga WHERE status <> 'completed' AND"
                     " idempotency_key LIKE $1 || '%'");
        if (open == 0 &&
            count(
                "SELECT count(*) FROM saga.saga WHERE idempotency_key LIKE $1 || '%'") ==
                SAGAS)
            break;
        sleep_ms(100);
    }
    print_message("%d sagas left behind completed in %lld s\n", SAGAS,
                  (long long)(time(NULL) - t0));
    assert_int_equal(open, 0);
    assert_int_equal(count("SELECT count(*) FROM saga.saga WHERE status = 'completed' AND"
                           " idempotency_key LIKE $1 || '%'"),
                     SAGAS);
    /* Sent once each, as attempt 1: no timeout, no retry re-sent them. */
    assert_int_equal(count("SELECT count(*) FROM saga.saga_event WHERE saga_id IN " RUN
                           " AND kind = 'step_dispatched'"),
                     SAGAS * 4);
    assert_int_equal(count("SELECT count(*) FROM saga.saga_event WHERE saga_id IN " RUN
                           " AND (kind = 'step_dispatched' AND attempt <> 1 OR kind IN"
                           " ('attempt_timed_out', 'attempt_failed'))"),
                     0);
    assert_int_equal(
        count("SELECT count(*) FROM " COMMAND_LOG " c WHERE saga_id IN " RUN), SAGAS * 4);
    assert_int_equal(count("SELECT count(*) FROM " COMMAND_LOG " c WHERE saga_id IN " RUN
                           " AND attempt <> 1"),
                     0);
    /* The outbox ends empty once Kafka confirmed the last commands. */
    for (int waited = 0; waited < 100 && count("SELECT count(*) FROM saga.outbox WHERE"
                                               " saga_id IN " RUN) != 0;
         waited++)
        sleep_ms(100);
    assert_int_equal(count("SELECT count(*) FROM saga.outbox WHERE saga_id IN " RUN), 0);
    assert_int_equal(
        it_wait_log(&sagad, "command(s) committed but not confirmed sent: sent", 1000),
        0);
    saga_defs_free(defs);
}

/* Does the log at path mention saga id? */
static int log_mentions(const char *path, const char *id)
{
    FILE *f = fopen(path, "r");
    char line[4096];
    int found = 0;
    if (f == NULL)
        return 0;
    while (!found && fgets(line, sizeof line, f) != NULL)
        found = strstr(line, id) != NULL;
    fclose(f);
    return found;
}

/* Make every COMMIT that would add an outbox row for topic <prefix>cmd.svc
 * fail (NULL: let them all through again). */
static void refuse_commands_to(const char *service)
{
    char sql[512];
    it_exec(db, "DELETE FROM public.refuse_topic");
    if (service == NULL)
        return;
    snprintf(sql, sizeof sql, "INSERT INTO public.refuse_topic VALUES ('%scmd.%s')",
             prefix, service);
    it_exec(db, sql);
}

static void test_commands_leave_only_after_commit(void **state)
{
    char id[64], key[96];
    const char *args[] = {"start", "outbox_order", "--no-wait", "--input",
                          input,   "--key",        key,         NULL};
    const char *q[1] = {id};
    (void)state;
    if (sagad.pid <= 0)
        start_sagad();
    /* A deferred trigger: checked at COMMIT, so the transition is written
     * in full and only its COMMIT fails — with a serialization failure, as
     * a server refuses a COMMIT for its own reasons: sagad tries again
     * until it succeeds. (A refusal caused by the data itself is isolated
     * and set aside: test_poison.) */
    it_exec(
        db,
        "CREATE TABLE public.refuse_topic (topic text PRIMARY KEY);"
        "CREATE FUNCTION public.refuse_outbox() RETURNS trigger LANGUAGE plpgsql AS $$"
        " BEGIN IF EXISTS (SELECT 1 FROM public.refuse_topic WHERE topic = NEW.topic)"
        " THEN RAISE EXCEPTION 'test_outbox refuses the COMMIT of a command to %',"
        " NEW.topic USING ERRCODE = 'serialization_failure'; END IF; RETURN NULL;"
        " END $$;"
        "CREATE CONSTRAINT TRIGGER refuse_outbox AFTER INSERT ON saga.outbox"
        " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW"
        " EXECUTE FUNCTION public.refuse_outbox()");

    /* The first command, from a start request. */
    refuse_commands_to("order");
    snprintf(key, sizeof key, "%scommit-1", prefix);
    assert_int_equal(it_sagactl(id, sizeof id, args), 0);
    assert_int_equal(strlen(id), 36);
    assert_int_equal(it_wait_log(&sagad, "start requests rolled back", 30000), 0);
    sleep_ms(2500); /* sagad tries again every second */
    assert_int_equal(it_int(db, "SELECT count(*) FROM saga.saga WHERE id = $1", 1, q), 0);
    assert_int_equal(it_int(db,
                            "SELECT count(*) FROM saga.start_request WHERE id = $1"
                            " AND processed_at IS NULL",
                            1, q),
                     1);
    assert_int_equal(
        it_int(db, "SELECT count(*) FROM orders.command_log WHERE saga_id = $1", 1, q),
        0);
    assert_false(log_mentions(svc[OW_ORDER].log, id));

    /* A later command, from a reply: the reply's transition is rolled
     * back and the reply consumed again until its COMMIT succeeds. */
    refuse_commands_to("payment");
    for (int waited = 0;
         waited < 300 &&
         it_int(db, "SELECT count(*) FROM orders.command_log WHERE saga_id = $1", 1, q) ==
             0;
         waited++)
        sleep_ms(100);
    assert_int_equal(
        it_int(db, "SELECT count(*) FROM orders.command_log WHERE saga_id = $1", 1, q),
        1);
    assert_int_equal(
        it_wait_log(&sagad, "reply batch rolled back, will be consumed again", 30000), 0);
    sleep_ms(2500);
    assert_int_equal(
        it_int(db, "SELECT count(*) FROM payment.command_log WHERE saga_id = $1", 1, q),
        0);
    assert_false(log_mentions(svc[OW_PAYMENT].log, id));
    /* create_order's success is not recorded either: it was rolled back. */
    {
        char *st = it_value(db,
                            "SELECT status FROM saga.saga_step WHERE saga_id = $1 AND"
                            " idx = 0",
                            1, q);
        assert_non_null(st);
        assert_string_equal(st, "dispatched");
        free(st);
    }

    /* Let the COMMITs through: the saga completes, each command once. */
    refuse_commands_to(NULL);
    assert_string_equal(it_wait_final(db, id, 60000), "completed");
    assert_int_equal(it_int(db,
                            "SELECT count(*) FROM " COMMAND_LOG
                            " c WHERE saga_id = $1 AND attempt = 1",
                            1, q),
                     4);
    assert_int_equal(it_int(db,
                            "SELECT count(*) FROM saga.saga_event WHERE saga_id = $1 AND"
                            " kind = 'step_dispatched' AND attempt <> 1",
                            1, q),
                     0);
    it_exec(db, "DROP TRIGGER refuse_outbox ON saga.outbox;"
                "DROP FUNCTION public.refuse_outbox(); DROP TABLE public.refuse_topic");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_left_in_the_outbox_is_sent_when_sagad_starts),
        cmocka_unit_test(test_commands_leave_only_after_commit),
    };
    return cmocka_run_group_tests_name("outbox and COMMIT order (PostgreSQL + Kafka)",
                                       tests, setup, teardown);
}
