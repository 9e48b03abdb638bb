/* saga_batch.c - the one writer of saga, step, history and outbox rows
 * (see saga_batch.h): the changes of a batch are accumulated in memory as
 * one JSON array per table and written with one statement each, then
 * COMMIT, in one round trip; also the sagas just started and dead letters.
 * Rows are unpacked by jsonb_to_recordset, so a statement's text and plan
 * do not depend on the batch size and every value is escaped by jansson,
 * not by hand. */
#include "saga_batch_internal.h"
#include "saga_shared.h"

/* ---- new sagas ---- */

static void set_i64(json_t *o, const char *key, int64_t v)
{
    json_object_set_new(o, key, json_integer((json_int_t)v));
}

/* Times of 0 mean "none": the key stays out and the column NULL. */
static void set_ms(json_t *o, const char *key, int64_t v)
{
    if (v > 0)
        set_i64(o, key, v);
}

static char *dump(json_t *a)
{
    return json_dumps(a, JSON_COMPACT);
}

int saga_batch_insert_new(PGconn *db, saga_state *const *states, const char *const *keys,
                          const char *const *callers, const char *const *business_keys,
                          int n, char (*existing)[SAGA_ID_LEN + 1], saga_error *err)
{
    json_t *rows = json_array(), *keyarr = json_array();
    char *text = NULL, *keytext = NULL;
    PGresult *r = NULL;
    int rc = SAGA_OK, nkeys = 0;

    if (rows == NULL || keyarr == NULL) {
        rc = saga__error_set(err, SAGA_ENOMEM, "out of memory");
        goto out;
    }
    for (int i = 0; i < n; i++) {
        const saga_state *s = states[i];
        json_t *o = json_object();
        existing[i][0] = '\0';
        if (o == NULL) {
            rc = saga__error_set(err, SAGA_ENOMEM, "out of memory");
            goto out;
        }
        set_i64(o, "seq", i);
        json_object_set_new(o, "id", json_string(s->id));
        json_object_set_new(o, "name", json_string(s->def->name));
        set_i64(o, "version", s->def->version);
        json_object_set_new(o, "status", json_string(saga_status_name(s->status)));
        set_i64(o, "cursor_step", s->cursor);
        json_object_set(o, "input", s->input);
        if (callers != NULL && callers[i] != NULL)
            json_object_set_new(o, "started_by", json_string(callers[i]));
        if (business_keys != NULL && business_keys[i] != NULL)
            json_object_set_new(o, "business_key", json_string(business_keys[i]));
        if (keys[i] != NULL) {
            json_object_set_new(o, "idempotency_key", json_string(keys[i]));
            json_array_append_new(keyarr, json_pack("{s:s, s:s?}", "k", keys[i], "caller",
                                                    callers != NULL ? callers[i] : NULL));
            nkeys++;
        }
        set_ms(o, "deadline_at", s->deadline_at);
        set_ms(o, "wake_at", s->wake_at);
        set_i64(o, "created_at", s->created_at);
        if (s->traceparent[0])
            json_object_set_new(o, "traceparent", json_string(s->traceparent));
        if (s->parent_id[0]) {
            json_object_set_new(o, "parent_id", json_string(s->parent_id));
            set_i64(o, "parent_step", s->parent_step);
        }
        json_array_append_new(rows, o);
    }
    if ((text = dump(rows)) == NULL) {
        rc = saga__error_set(err, SAGA_ENOMEM, "out of memory");
        goto out;
    }
    {
        const char *p[1] = {text};
        r = PQexecPrepared(db, "saga_insert_sagas", 1, p, NULL, NULL, 0);
    }
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        saga_pgerr_note(r);
        rc = saga__error_set(err, SAGA_EDB, "creating sagas: %s", PQerrorMessage(db));
        goto out;
    }
    if (PQntuples(r) == n || nkeys == 0)
        goto out;
    /* Some keys were taken (by earlier sagas, or twice in this batch). */
    {
        int created = PQntuples(r);
        char(*made)[SAGA_ID_LEN + 1] = malloc(sizeof *made * (size_t)(created + 1));
        const char *p[1];
        if (made == NULL || (keytext = dump(keyarr)) == NULL) {
            free(made);
            rc = saga__error_set(err, SAGA_ENOMEM, "out of memory");
            goto out;
        }
        for (int i = 0; i < created; i++)
            snprintf(made[i], SAGA_ID_LEN + 1, "%s", PQgetvalue(r, i, 0));
        PQclear(r);
        p[0] = keytext;
        r = PQexecPrepared(db, "saga_key_holders", 1, p, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            saga_pgerr_note(r);
            free(made);
            rc = saga__error_set(err, SAGA_EDB, "finding idempotency keys: %s",
                                 PQerrorMessage(db));
            goto out;
        }
        for (int i = 0; i < n; i++) {
            int was_made = 0;
            if (keys[i] == NULL)
                continue;
            for (int k = 0; k < created && !was_made; k++)
                was_made = strcmp(made[k], states[i]->id) == 0;
            if (was_made)
                continue;
            for (int k = 0; k < PQntuples(r); k++)
                if (strcmp(PQgetvalue(r, k, 0), keys[i]) == 0 &&
                    (callers == NULL || callers[i] == NULL ||
                     strcmp(PQgetvalue(r, k, 2), callers[i]) == 0))
                    snprintf(existing[i], SAGA_ID_LEN + 1, "%s", PQgetvalue(r, k, 1));
        }
        free(made);
    }
out:
    PQclear(r);
    free(text);
    free(keytext);
    json_decref(rows);
    json_decref(keyarr);
    return rc;
}

saga_batch *saga_batch_new(const saga_store_opts *o, const char *owner, int lease_s)
{
    saga_batch *b = calloc(1, sizeof *b);
    if (b == NULL)
        return NULL;
    b->actor = strdup(o && o->actor ? o->actor : "sagad");
    b->prefix = strdup(o && o->topic_prefix ? o->topic_prefix : "saga.");
    b->owner = owner ? strdup(owner) : NULL;
    b->lease_s = lease_s > 0 ? lease_s : 10;
    b->sagas = json_array();
    b->steps = json_array();
    b->elements = json_array();
    b->child_starts = json_array();
    b->child_undos = json_array();
    b->child_ends = json_array();
    b->events = json_array();
    b->outbox = json_array();
    b->requests = json_array();
    b->dead = json_array();
    b->aside = json_array();
    if (b->actor == NULL || b->prefix == NULL || (owner && b->owner == NULL) ||
        b->sagas == NULL || b->steps == NULL || b->elements == NULL ||
        b->child_starts == NULL || b->child_undos == NULL || b->child_ends == NULL ||
        b->events == NULL || b->outbox == NULL || b->requests == NULL ||
        b->dead == NULL || b->aside == NULL) {
        saga_batch_free(b);
        return NULL;
    }
    return b;
}

void saga_batch_reset(saga_batch *b)
{
    json_array_clear(b->sagas);
    json_array_clear(b->steps);
    json_array_clear(b->elements);
    json_array_clear(b->child_starts);
    json_array_clear(b->child_undos);
    json_array_clear(b->child_ends);
    json_array_clear(b->events);
    json_array_clear(b->outbox);
    json_array_clear(b->requests);
    json_array_clear(b->dead);
    json_array_clear(b->aside);
    b->seq = 0;
    b->count = 0;
}

void saga_batch_free(saga_batch *b)
{
    if (b == NULL)
        return;
    free(b->actor);
    free(b->prefix);
    free(b->owner);
    json_decref(b->sagas);
    json_decref(b->steps);
    json_decref(b->elements);
    json_decref(b->child_starts);
    json_decref(b->child_undos);
    json_decref(b->child_ends);
    json_decref(b->events);
    json_decref(b->outbox);
    json_decref(b->requests);
    json_decref(b->dead);
    json_decref(b->aside);
    free(b);
}

int saga_batch_count(const saga_batch *b)
{
    return b->count;
}

int saga_batch_has_children(const saga_batch *b)
{
    return json_array_size(b->child_starts) + json_array_size(b->child_undos) +
               json_array_size(b->child_ends) >
           0;
}

static int oom(saga_error *err)
{
    return saga__error_set(err, SAGA_ENOMEM, "out of memory");
}

/* json_array_append_new() that reports failure. */
static int append(json_t *arr, json_t *o, saga_error *err)
{
    if (o == NULL || json_array_append_new(arr, o) != 0)
        return oom(err);
    return SAGA_OK;
}

int saga_batch_add_saga_row(saga_batch *b, const saga_state *s, saga_error *err)
{
    json_t *o = json_object();
    if (o != NULL) {
        set_i64(o, "seq", b->seq++);
        json_object_set_new(o, "id", json_string(s->id));
        json_object_set_new(o, "status", json_string(saga_status_name(s->status)));
        set_i64(o, "cursor_step", s->cursor);
        set_ms(o, "wake_at", s->wake_at);
        set_i64(o, "updated_at", s->updated_at);
        set_ms(o, "progressed_at", s->progressed_at);
        set_ms(o, "deadline_at", s->deadline_at);
        json_object_set_new(o, "lazy", json_boolean(!saga_machine_wake_is_exact(s)));
    }
    return append(b->sagas, o, err);
}

int saga_batch_add(saga_batch *b, const saga_state *s, const saga_actions *a, int created,
                   saga_error *err)
{
    int rc;
    b->count++;
    if (!created && (rc = saga_batch_add_saga_row(b, s, err)) != SAGA_OK)
        return rc;
    for (int i = 0; i < s->nsteps; i++) {
        const saga_step_state *st = &s->steps[i];
        json_t *o;
        /* A fan-out's elements change without the step changing. */
        if ((rc = saga__batch_add_elements(b, s, i, created, err)) != SAGA_OK)
            return rc;
        if (!created && !st->dirty)
            continue;
        if ((o = json_object()) != NULL) {
            set_i64(o, "seq", b->seq++);
            json_object_set_new(o, "saga_id", json_string(s->id));
            set_i64(o, "idx", i);
            json_object_set_new(o, "name", json_string(s->def->steps[i].name));
            json_object_set_new(o, "status",
                                json_string(saga_step_status_name(st->status)));
            set_i64(o, "attempts", st->attempts);
            set_i64(o, "attempt_base", st->attempt_base);
            json_object_set_new(o, "awaiting", json_boolean(st->awaiting));
            set_ms(o, "due_at", st->due_at);
            if (st->output != NULL)
                json_object_set(o, "output", st->output);
            if (st->error != NULL)
                json_object_set(o, "error", st->error);
            set_ms(o, "started_at", st->started_at);
            set_ms(o, "finished_at", st->finished_at);
            /* A wait step waiting: the signal sagad may deliver to it. */
            if (s->def->steps[i].wait_signal != NULL &&
                st->status == SAGA_STEP_DISPATCHED)
                json_object_set_new(o, "waiting_for",
                                    json_string(s->def->steps[i].wait_signal));
        }
        if ((rc = append(b->steps, o, err)) != SAGA_OK)
            return rc;
    }
    for (int i = 0; i < a->n; i++) {
        const saga_action *ac = &a->items[i];
        json_t *o = json_object();
        if (o == NULL)
            return oom(err);
        if (ac->kind != SAGA_ACT_HISTORY && ac->kind != SAGA_ACT_SEND) {
            json_decref(o);
            if ((rc = saga__batch_add_child_action(b, s, ac, err)) != SAGA_OK)
                return rc;
            continue;
        }
        set_i64(o, "seq", b->seq++);
        json_object_set_new(o, "saga_id", json_string(s->id));
        if (ac->kind == SAGA_ACT_HISTORY) {
            set_i64(o, "at", s->updated_at);
            json_object_set_new(o, "kind", json_string(saga_history_kind_name(ac->what)));
            if (ac->step >= 0) {
                set_i64(o, "step", ac->step);
                json_object_set_new(o, "phase", json_string(saga_phase_name(ac->phase)));
            }
            if (ac->attempt > 0)
                set_i64(o, "attempt", ac->attempt);
            if (ac->detail != NULL)
                json_object_set(o, "detail", ac->detail);
            json_object_set_new(o, "actor", json_string(b->actor));
            if ((rc = append(b->events, o, err)) != SAGA_OK)
                return rc;
        } else {
            char topic[256], *text = NULL, tp[SAGA_TRACEPARENT_LEN + 1];
            if ((rc = saga_action_command(s, ac, b->prefix, &text, topic, tp, err)) !=
                SAGA_OK) {
                json_decref(o);
                return rc;
            }
            json_object_set_new(o, "topic", json_string(topic));
            json_object_set_new(o, "msg_key", json_string(s->id));
            json_object_set_new(o, "payload", json_string(text));
            if (tp[0])
                json_object_set_new(o, "traceparent", json_string(tp));
            free(text);
            if ((rc = append(b->outbox, o, err)) != SAGA_OK)
                return rc;
        }
    }
    return SAGA_OK;
}

int saga_batch_add_request_done(saga_batch *b, const char *request_id, const char *error,
                                saga_error *err)
{
    json_t *o = json_object();
    if (o != NULL) {
        json_object_set_new(o, "id", json_string(request_id));
        if (error != NULL)
            json_object_set_new(o, "error", json_string(error));
    }
    return append(b->requests, o, err);
}

/* Text that PostgreSQL and jansson both take: printable ASCII kept, any
 * other byte as '?', at most max bytes (then "..."). Reasons and keys
 * come from outside and may hold anything. */
static json_t *clean_text(const char *s, size_t len, size_t max)
{
    char buf[1100];
    size_t k = 0;
    if (s == NULL)
        return json_null();
    if (max > sizeof buf - 4)
        max = sizeof buf - 4;
    for (size_t i = 0; i < len && k < max; i++)
        buf[k++] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : s[i] == '\n' ? ' ' : '?';
    while (k > 0 && buf[k - 1] == ' ') /* libpq's messages end in a newline */
        k--;
    if (len > max)
        memcpy(buf + k, "...", 3), k += 3;
    return json_stringn(buf, k);
}

int saga_batch_add_dead_letter(saga_batch *b, const saga_dead_letter *d, saga_error *err)
{
    static const char hex[] = "0123456789abcdef";
    size_t keep =
        d->payload_len < SAGA_DEAD_PAYLOAD_MAX ? d->payload_len : SAGA_DEAD_PAYLOAD_MAX;
    json_t *o = json_object();
    char *h = malloc(keep * 2 + 1);
    if (o == NULL || h == NULL) {
        json_decref(o);
        free(h);
        return oom(err);
    }
    for (size_t i = 0; i < keep; i++) {
        unsigned char c = ((const unsigned char *)d->payload)[i];
        h[2 * i] = hex[c >> 4];
        h[2 * i + 1] = hex[c & 15];
    }
    h[keep * 2] = '\0';
    set_i64(o, "seq", b->seq++);
    json_object_set_new(o, "source", json_string(d->source));
    if (d->topic != NULL) {
        json_object_set_new(o, "topic", clean_text(d->topic, strlen(d->topic), 255));
        set_i64(o, "kafka_partition", d->partition);
        set_i64(o, "kafka_offset", d->offset);
    }
    if (d->key != NULL)
        json_object_set_new(o, "msg_key", clean_text(d->key, d->key_len, 128));
    if (d->ref != NULL)
        json_object_set_new(o, "ref", clean_text(d->ref, strlen(d->ref), 128));
    json_object_set_new(o, "payload", json_string(h));
    set_i64(o, "payload_bytes", (int64_t)d->payload_len);
    json_object_set_new(o, "reason",
                        clean_text(d->reason, strlen(d->reason ? d->reason : ""), 1024));
    set_i64(o, "attempts", d->attempts > 0 ? d->attempts : 1);
    free(h);
    return append(b->dead, o, err);
}

int saga_batch_add_timer_set_aside(saga_batch *b, const char *saga_id, const char *reason,
                                   saga_error *err)
{
    json_t *o = json_object();
    if (o != NULL) {
        set_i64(o, "seq", b->seq++);
        json_object_set_new(o, "id", json_string(saga_id));
        json_object_set_new(
            o, "kind", json_string(saga_history_kind_name(SAGA_HIST_SAGA_SET_ASIDE)));
        json_object_set_new(o, "reason", clean_text(reason, strlen(reason), 1024));
    }
    return append(b->aside, o, err);
}

int saga_batch_commit(PGconn *db, saga_batch *b, saga_outbox *sent, saga_error *err)
{
    struct {
        json_t *rows;
        const char *stmt, *what;
        ExecStatusType want;
        int nparams; /* $1 the rows; $2 b->owner; $3 the lease */
        char *text;
    } parts[] = {
        {b->sagas, "saga_update_sagas", "saving sagas", PGRES_COMMAND_OK, 1, NULL},
        {b->steps, "saga_upsert_steps", "saving steps", PGRES_COMMAND_OK, 1, NULL},
        {b->elements, "saga_upsert_elements", "saving fan-out elements", PGRES_COMMAND_OK,
         1, NULL},
        {b->child_starts, "saga_start_children", "starting child sagas", PGRES_COMMAND_OK,
         1, NULL},
        {b->child_undos, "saga_undo_children", "asking child sagas to undo",
         PGRES_COMMAND_OK, 1, NULL},
        {b->child_ends, "saga_end_children", "telling parents their children ended",
         PGRES_COMMAND_OK, 1, NULL},
        {b->events, "saga_insert_events", "writing history", PGRES_COMMAND_OK, 1, NULL},
        {b->requests, "saga_finish_requests", "finishing start requests",
         PGRES_COMMAND_OK, 1, NULL},
        {b->aside, "saga_set_aside_timers", "setting timers aside", PGRES_COMMAND_OK, 2,
         NULL},
        {b->dead, "saga_insert_dead", "writing dead letters", PGRES_COMMAND_OK, 2, NULL},
        {b->outbox, "saga_insert_outbox", "writing the outbox", PGRES_TUPLES_OK, 3, NULL},
    };
    const int nparts = (int)(sizeof parts / sizeof parts[0]);
    char lease[16];
    int rc = SAGA_OK, synced = 0;
    PGresult *r;

    snprintf(lease, sizeof lease, "%d", b->lease_s);
    for (int i = 0; i < nparts; i++)
        if (json_array_size(parts[i].rows) > 0 &&
            (parts[i].text = dump(parts[i].rows)) == NULL)
            rc = oom(err);
    if (rc != SAGA_OK)
        goto out;
    if (PQenterPipelineMode(db) != 1) {
        rc = saga__error_set(err, SAGA_EDB, "entering pipeline mode: %s",
                             PQerrorMessage(db));
        goto out;
    }
    for (int i = 0; i < nparts && rc == SAGA_OK; i++) {
        const char *p[3] = {parts[i].text, b->owner, lease};
        if (parts[i].text == NULL)
            continue;
        rc = saga__batch_send_prepared(db, parts[i].stmt, parts[i].nparams, p, err);
    }
    if (rc == SAGA_OK)
        rc = saga__batch_send_plain(db, "COMMIT", err);
    if (rc == SAGA_OK) {
        if (PQpipelineSync(db) != 1)
            rc = saga__error_set(err, SAGA_EDB, "pipeline sync: %s", PQerrorMessage(db));
        else
            synced = 1;
    }
    if (rc == SAGA_OK) {
        for (int i = 0; i < nparts; i++) {
            if (parts[i].text == NULL)
                continue;
            if ((r = saga__batch_next_result(db, parts[i].want, parts[i].what, err)) ==
                NULL) {
                rc = SAGA_EDB;
                continue;
            }
            for (int k = 0; parts[i].want == PGRES_TUPLES_OK && k < PQntuples(r); k++) {
                char *payload = strdup(PQgetvalue(r, k, 3));
                if (payload == NULL ||
                    saga_outbox_push(sent, saga__pg_get_i64(r, k, 0), PQgetvalue(r, k, 1),
                                     PQgetvalue(r, k, 2), payload,
                                     PQgetvalue(r, k, 4)) != SAGA_OK)
                    rc = oom(err);
            }
            PQclear(r);
        }
        /* An aborted transaction answers COMMIT with ROLLBACK: not a commit. */
        r = saga__batch_next_result(db, PGRES_COMMAND_OK, "COMMIT", err);
        if (r == NULL) {
            rc = SAGA_EDB; /* err holds the server's reason */
        } else if (strcmp(PQcmdStatus(r), "COMMIT") != 0) {
            if (rc == SAGA_OK)
                rc = saga__error_set(err, SAGA_EDB,
                                     "COMMIT: the transaction was rolled back");
            else
                rc = SAGA_EDB;
        }
        PQclear(r);
    }
    saga__batch_end_pipeline(db, synced);
out:
    for (int i = 0; i < nparts; i++)
        free(parts[i].text);
    saga_batch_reset(b);
    return rc;
}
