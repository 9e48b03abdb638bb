/* saga_participant_result.c - a handler's outcome: saga_result_ok, _fail,
 * _retry, and the deferred outcome (saga_result_defer, then
 * saga_deferred_ok, _fail or _retry), which runs the barrier itself. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "saga_participant_private.h"

/* Internal: forget the handler's outcome so that ours replaces it. */
void saga__participant_result_reset(saga_result *r)
{
    json_decref(r->output);
    r->output = NULL;
    r->set = 0;
}

/* 1 when r takes no outcome now (NULL, or one is set: counted as ignored). */
static int outcome_taken(saga_result *r)
{
    if (r != NULL && r->set)
        r->ignored++;
    return r == NULL || r->set;
}

void saga_result_ok(saga_result *r, json_t *output)
{
    if (outcome_taken(r)) {
        json_decref(output);
        return;
    }
    json_decref(r->output);
    r->set = 1;
    r->status = SAGA_REPLY_OK;
    r->output = output != NULL ? output : json_object();
}

static void result_error(saga_result *r, saga_reply_status st, const char *code,
                         int64_t after, const char *fmt, va_list ap)
{
    json_decref(r->output);
    r->output = NULL;
    r->set = 1;
    r->status = st;
    /* Cut to fit, but never inside a UTF-8 character: the reply's JSON
     * would not hold it, and the error would be lost. */
    if (snprintf(r->code, sizeof r->code, "%s", code ? code : "error") >=
        (int)sizeof r->code)
        saga__utf8_trim_tail(r->code, sizeof r->code - 1);
    if (vsnprintf(r->message, sizeof r->message, fmt ? fmt : "", ap) >=
        (int)sizeof r->message)
        saga__utf8_trim_tail(r->message, sizeof r->message - 1);
    r->retry_after = after;
}

void saga_result_fail(saga_result *r, const char *code, const char *fmt, ...)
{
    va_list ap;
    if (outcome_taken(r))
        return;
    va_start(ap, fmt);
    result_error(r, SAGA_REPLY_FAILED, code, 0, fmt, ap);
    va_end(ap);
}

void saga_result_retry(saga_result *r, int64_t after_ms, const char *fmt, ...)
{
    va_list ap;
    if (outcome_taken(r))
        return;
    va_start(ap, fmt);
    result_error(r, SAGA_REPLY_RETRY, "retry", after_ms < 0 ? 0 : after_ms, fmt, ap);
    va_end(ap);
}

static char *dup_str(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}

saga_deferred *saga_result_defer(saga_result *r)
{
    saga_deferred *d;
    const saga_command *c;
    if (r == NULL || r->set || r->cmd == NULL) {
        if (r != NULL)
            r->ignored++;
        return NULL;
    }
    c = r->cmd;
    d = calloc(1, sizeof *d);
    if (d == NULL)
        return NULL;
    d->cmd = *c;
    d->cmd.saga = dup_str(c->saga);
    d->cmd.step_name = dup_str(c->step_name);
    d->cmd.action = dup_str(c->action);
    d->cmd.command_id = dup_str(c->command_id);
    d->cmd.reply_to = dup_str(c->reply_to);
    d->cmd.payload = c->payload != NULL ? json_deep_copy(c->payload) : NULL;
    d->cmd.traceparent = c->traceparent != NULL ? dup_str(c->traceparent) : NULL;
    if (d->cmd.saga == NULL || d->cmd.step_name == NULL || d->cmd.action == NULL ||
        d->cmd.command_id == NULL || d->cmd.reply_to == NULL ||
        (c->traceparent != NULL && d->cmd.traceparent == NULL)) {
        saga_command_clear(&d->cmd);
        free(d);
        return NULL;
    }
    r->set = 1;
    r->deferred = d;
    return d;
}

/* Send the outcome res for d (through the barrier when there is a
 * database), free d. */
static int complete(saga_participant *p, saga_deferred *d, saga_result *res)
{
    saga_error e = {0};
    json_t *reply = NULL, *cached = NULL;
    saga__barrier_verdict v = SAGA__BARRIER_PROCEED;
    int rc = SAGA_OK, recorded = 0;

    if (p->db != NULL && (p->in_handler || p->group_open)) {
        /* Its barrier write would land in another command's transaction. */
        saga__participant_warn(
            p,
            "deferred %s completed inside a handler: complete it after the handler "
            "returned",
            d->cmd.command_id);
        json_decref(res->output);
        return SAGA_ESTATE;
    }
    saga__participant_output_over_limit(p, &d->cmd, res);
    if (p->db != NULL) {
        if (PQstatus(p->db) != CONNECTION_OK)
            saga__participant_db_reset(p);
        rc = saga__pg_exec(p->db, "BEGIN", &e);
        if (rc == SAGA_OK)
            rc = saga__barrier_enter(p->db, NULL, &d->cmd, &v, &cached, &e);
        if (rc == SAGA_OK && v == SAGA__BARRIER_HANGING) {
            saga__participant_result_reset(res);
            saga__participant_refuse_hanging(res, &d->cmd);
        } else if (rc == SAGA_OK && v == SAGA__BARRIER_NULL_COMP) {
            saga__participant_result_reset(res);
            saga_result_ok(res, json_pack("{s:b}", "null_compensation", 1));
        }
        if (rc == SAGA_OK && v != SAGA__BARRIER_DUPLICATE && v != SAGA__BARRIER_HANGING &&
            res->status != SAGA_REPLY_RETRY) {
            reply = saga__participant_reply_object(&d->cmd, res);
            rc = reply
                     ? saga__barrier_record(
                           p->db, NULL, &d->cmd, reply,
                           v == SAGA__BARRIER_NULL_COMP ? "null_compensation" : "handled",
                           &v, &cached, &e)
                     : SAGA_ENOMEM;
            recorded = rc == SAGA_OK && v == SAGA__BARRIER_PROCEED;
            if (rc == SAGA_OK && v == SAGA__BARRIER_HANGING) {
                /* Its compensation came first, while it was pending. */
                json_decref(reply);
                reply = NULL;
                saga__participant_result_reset(res);
                saga__participant_refuse_hanging(res, &d->cmd);
            }
        }
        /* Keep the barrier row only with its reply: a retry leaves no trace. */
        if (rc == SAGA_OK)
            rc = saga__pg_exec(p->db, recorded ? "COMMIT" : "ROLLBACK", &e);
        else
            saga__pg_exec(p->db, "ROLLBACK", NULL);
    }
    if (rc == SAGA_OK) {
        if (cached != NULL) {
            json_decref(reply);
            reply = cached; /* an earlier completion's answer stands */
            cached = NULL;
        } else if (reply == NULL) {
            reply = saga__participant_reply_object(&d->cmd, res);
        }
        if (reply != NULL)
            saga__participant_send_reply(p, &d->cmd, reply, NULL);
        else
            rc = SAGA_ENOMEM;
        rd_kafka_poll(p->producer, 0);
    } else {
        saga__participant_warn(p, "completing deferred %s: %s", d->cmd.command_id,
                               e.message);
    }
    json_decref(reply);
    json_decref(cached);
    json_decref(res->output);
    saga_command_clear(&d->cmd);
    free(d);
    return rc;
}

int saga_deferred_ok(saga_participant *p, saga_deferred *d, json_t *output)
{
    saga_result res = {0};
    if (p == NULL || d == NULL) {
        json_decref(output);
        return SAGA_EINVAL;
    }
    saga_result_ok(&res, output);
    return complete(p, d, &res);
}

int saga_deferred_fail(saga_participant *p, saga_deferred *d, const char *code,
                       const char *fmt, ...)
{
    saga_result res = {0};
    va_list ap;
    if (p == NULL || d == NULL)
        return SAGA_EINVAL;
    va_start(ap, fmt);
    result_error(&res, SAGA_REPLY_FAILED, code, 0, fmt, ap);
    va_end(ap);
    return complete(p, d, &res);
}

int saga_deferred_retry(saga_participant *p, saga_deferred *d, int64_t after_ms,
                        const char *fmt, ...)
{
    saga_result res = {0};
    va_list ap;
    if (p == NULL || d == NULL)
        return SAGA_EINVAL;
    va_start(ap, fmt);
    result_error(&res, SAGA_REPLY_RETRY, "retry", after_ms < 0 ? 0 : after_ms, fmt, ap);
    va_end(ap);
    return complete(p, d, &res);
}
