/* saga_participant_tx.c - a handler inside the barrier's transaction: one
 * transaction per command, or a group of commands sharing one (each in a
 * savepoint, their barrier rows inserted together before the COMMIT). */
#include <stdint.h>

#include "saga_participant_private.h"

/* Run the handler, timing it for the stats. */
static void call_handler(saga_participant *p, const handler *h, const saga_command *cmd,
                         PGconn *db, saga_result *res)
{
    uint64_t start = (uint64_t)saga__mono_ns();
    h->fn(cmd, db, res, h->arg);
    STAT_ADD(p, handler_time_ns, (uint64_t)saga__mono_ns() - start);
    STAT_ADD(p, handler_calls, 1);
}

/* Reconnect after the server went away; prepared statements are per
 * connection, so prepare them again. */
void saga__participant_db_reset(saga_participant *p)
{
    saga_error e = {0};
    PQreset(p->db);
    if (PQstatus(p->db) == CONNECTION_OK && saga__barrier_prepare(p->db, &e) != SAGA_OK)
        saga__participant_warn(p, "%s", e.message);
}

/* Open a group transaction (commands then run in savepoints). */
void saga__participant_group_begin(saga_participant *p)
{
    saga_error e = {0};
    if (PQstatus(p->db) != CONNECTION_OK)
        saga__participant_db_reset(p);
    if (saga__pg_exec(p->db, "BEGIN", &e) != SAGA_OK) {
        saga__participant_warn(p, "%s", e.message);
        return; /* commands run in their own transactions */
    }
    p->group_open = 1;
    p->group_n = 0;
    p->group_failed = 0;
    p->group_started = saga__mono_ms();
}

/* COMMIT the group and send its replies; when the group failed, roll it
 * back and return -1: its commands must be consumed again. */
int saga__participant_group_end(saga_participant *p)
{
    saga_error e = {0};
    int ok, conflicts = 0;
    if (!p->group_open)
        return 0;
    p->group_open = 0;
    ok = !p->group_failed &&
         saga__barrier_batch_flush(p->db, &p->group_rows, &conflicts, &e) == SAGA_OK &&
         conflicts == 0 && saga__pg_exec(p->db, "COMMIT", &e) == SAGA_OK;
    if (!ok) {
        saga__barrier_batch_clear(&p->group_rows);
        saga__pg_exec(p->db, "ROLLBACK", NULL);
        p->solo = BATCH_MAX;
        /* A conflict: another delivery of one of these commands stored its
         * barrier row meanwhile; consumed again, each finds its row. */
        saga__participant_warn(
            p, "a group of %d command(s) was rolled back (%s); they will be redelivered",
            p->group_n,
            p->group_failed ? "a database error"
            : conflicts > 0 ? "another delivery answered one of them meanwhile"
                            : e.message);
    }
    saga__participant_drop_pending(p, ok);
    return ok ? 0 : -1;
}

/* Per command: a transaction of its own, or a savepoint in the group. */
static int cmd_begin(saga_participant *p, saga_error *e)
{
    if (!p->group_open && PQstatus(p->db) != CONNECTION_OK)
        saga__participant_db_reset(p);
    return saga__pg_exec(p->db, p->group_open ? "SAVEPOINT saga_cmd" : "BEGIN", e);
}

static int cmd_commit(saga_participant *p, saga_error *e)
{
    return saga__pg_exec(p->db, p->group_open ? "RELEASE SAVEPOINT saga_cmd" : "COMMIT",
                         e);
}

static void cmd_rollback(saga_participant *p)
{
    if (!p->group_open) {
        saga__pg_exec(p->db, "ROLLBACK", NULL);
        return;
    }
    /* If even this fails, the connection or transaction is gone: the whole
     * group is rolled back and redelivered. */
    if (saga__pg_exec(p->db, "ROLLBACK TO SAVEPOINT saga_cmd", NULL) != SAGA_OK ||
        saga__pg_exec(p->db, "RELEASE SAVEPOINT saga_cmd", NULL) != SAGA_OK)
        p->group_failed = 1;
}

/* An ok result whose output is over the limit becomes a definite failure
 * (message_too_large): sagad would refuse to store it, and a reply over
 * the broker's size would never leave. Returns 1 when it did. */
int saga__participant_output_over_limit(saga_participant *p, const saga_command *cmd,
                                        saga_result *res)
{
    int64_t limit = p->max_output_bytes;
    int64_t ceiling = p->max_message_bytes > 32768 ? p->max_message_bytes - 16384 : 16384;
    size_t bytes;
    if (!res->set || res->status != SAGA_REPLY_OK || res->output == NULL)
        return 0;
    if (limit <= 0 || limit > ceiling)
        limit = ceiling;
    bytes = json_dumpb(res->output, NULL, 0, 0);
    if ((int64_t)bytes <= limit)
        return 0;
    saga__participant_result_reset(res);
    saga_result_fail(res, "message_too_large",
                     "the output of %zu bytes is over the limit of %lld bytes "
                     "(max_output_bytes)",
                     bytes, (long long)limit);
    STAT_ADD(p, output_too_large, 1);
    saga__participant_warn(
        p,
        "command %s: the output of %zu bytes is over the limit of %lld bytes; "
        "answered failed with message_too_large",
        cmd->command_id, bytes, (long long)limit);
    return 1;
}

void saga__participant_run_plain(saga_participant *p, const handler *h,
                                 const saga_command *cmd, saga_result *res)
{
    call_handler(p, h, cmd, NULL, res);
}

/* The handler inside BEGIN / barrier / COMMIT (in a group: SAVEPOINT /
 * barrier / RELEASE). The barrier row is written once, after the handler,
 * with its reply. On a database error the result becomes `retry` and
 * nothing is committed. */
void saga__participant_run_with_barrier(saga_participant *p, const handler *h,
                                        const saga_command *cmd, saga_result *res,
                                        json_t **cached)
{
    saga_error e = {0};
    saga__barrier_verdict v;
    json_t *reply;
    const char *outcome = "handled";
    int rc;

    if (cmd_begin(p, &e) != SAGA_OK)
        goto dberr;
    if (saga__barrier_enter(p->db, p->group_open ? &p->group_rows : NULL, cmd, &v, cached,
                            &e) != SAGA_OK)
        goto dberr;
    switch (v) {
    case SAGA__BARRIER_DUPLICATE:
    case SAGA__BARRIER_HANGING:
        goto settled;
    case SAGA__BARRIER_NULL_COMP:
        STAT_ADD(p, null_compensations, 1);
        saga_result_ok(res, json_pack("{s:b}", "null_compensation", 1));
        outcome = "null_compensation";
        break;
    case SAGA__BARRIER_PROCEED:
        /* A failed handler's writes are undone, its reply kept: in a group
         * the command's own savepoint does that, alone one more. */
        if (!p->group_open &&
            saga__pg_exec(p->db, "SAVEPOINT saga_handler", &e) != SAGA_OK)
            goto dberr;
        p->in_handler = 1;
        call_handler(p, h, cmd, p->db, res);
        p->in_handler = 0;
        if (res->deferred != NULL) {
            /* Nothing is recorded now: completing runs the barrier. */
            cmd_rollback(p);
            return;
        }
        if (!res->set)
            saga_result_retry(res, 0, "handler for %s set no result", cmd->action);
        if (res->status == SAGA_REPLY_RETRY) {
            cmd_rollback(p);
            return;
        }
        if (PQtransactionStatus(p->db) == PQTRANS_INERROR &&
            res->status == SAGA_REPLY_OK) {
            cmd_rollback(p);
            saga__participant_result_reset(res);
            saga_result_retry(res, 0,
                              "handler for %s reported ok but its transaction failed: %s",
                              cmd->action, PQerrorMessage(p->db));
            return;
        }
        saga__participant_output_over_limit(p, cmd, res);
        if (res->status == SAGA_REPLY_FAILED &&
            saga__pg_exec(p->db,
                          p->group_open ? "ROLLBACK TO SAVEPOINT saga_cmd"
                                        : "ROLLBACK TO SAVEPOINT saga_handler",
                          &e) != SAGA_OK)
            goto dberr;
        break;
    }
    reply = saga__participant_reply_object(cmd, res);
    rc = reply != NULL
             ? saga__barrier_record(p->db, p->group_open ? &p->group_rows : NULL, cmd,
                                    reply, outcome, &v, cached, &e)
             : saga__error_set(&e, SAGA_ENOMEM, "out of memory");
    json_decref(reply);
    if (rc != SAGA_OK)
        goto dberr;
    if (v == SAGA__BARRIER_PROCEED) {
        if (cmd_commit(p, &e) != SAGA_OK)
            goto dberr;
        return;
    }
settled:
    /* Seen before, or while the handler ran (another delivery stored its
     * row first): nothing of this run stays, and the stored answer is
     * given. */
    cmd_rollback(p);
    if (v == SAGA__BARRIER_HANGING) {
        STAT_ADD(p, hanging_refused, 1);
        saga__participant_result_reset(res);
        saga__participant_refuse_hanging(res, cmd);
    } else if (*cached == NULL) {
        /* A row without a reply: not written by this barrier. Ask again
         * later rather than answer with what was just undone. */
        saga__participant_result_reset(res);
        saga_result_retry(res, 1000, "the barrier row of %s holds no reply",
                          cmd->command_id);
    } else {
        STAT_ADD(p, duplicates, 1);
    }
    return;
dberr:
    cmd_rollback(p);
    json_decref(*cached);
    *cached = NULL;
    saga__participant_warn(p, "command %s: %s", cmd->command_id, e.message);
    saga__participant_result_reset(res);
    saga_result_retry(res, 1000, "participant %s database error: %s", p->service,
                      e.message);
}
