/* saga_batch_elements.c - fan-out elements (saga.saga_element): the rows
 * of the elements a transition changed, added to the batch like its
 * steps, and the elements of the sagas a batch loads, read under the
 * same lock (one more round trip, only for sagas with a fan-out under
 * way). */
#include "saga_batch_internal.h"
#include "saga_shared.h"

static void set_i64(json_t *o, const char *key, int64_t v)
{
    json_object_set_new(o, key, json_integer((json_int_t)v));
}

int saga__batch_add_elements(saga_batch *b, const saga_state *s, int i, int created,
                             saga_error *err)
{
    const saga_step_state *st = &s->steps[i];
    for (int e = 0; e < st->nelements && st->elements != NULL; e++) {
        const saga_step_state *el = &st->elements[e];
        json_t *o;
        if (!created && !el->dirty)
            continue;
        if ((o = json_object()) == NULL)
            return saga__error_set(err, SAGA_ENOMEM, "out of memory");
        set_i64(o, "seq", b->seq++);
        json_object_set_new(o, "saga_id", json_string(s->id));
        set_i64(o, "step", i);
        set_i64(o, "idx", e);
        json_object_set_new(o, "status", json_string(saga_step_status_name(el->status)));
        set_i64(o, "attempts", el->attempts);
        set_i64(o, "attempt_base", el->attempt_base);
        json_object_set_new(o, "awaiting", json_boolean(el->awaiting));
        /* Times of 0 mean "none": the key stays out and the column NULL. */
        if (el->due_at > 0)
            set_i64(o, "due_at", el->due_at);
        if (el->started_at > 0)
            set_i64(o, "started_at", el->started_at);
        if (el->finished_at > 0)
            set_i64(o, "finished_at", el->finished_at);
        if (el->output != NULL)
            json_object_set(o, "output", el->output);
        if (el->error != NULL)
            json_object_set(o, "error", el->error);
        if (json_array_append_new(b->elements, o) != 0)
            return saga__error_set(err, SAGA_ENOMEM, "out of memory");
    }
    return SAGA_OK;
}

/* Does s have a fan-out that began (so elements to read)? */
static int has_elements(const saga_state *s)
{
    for (int i = 0; i < s->nsteps; i++)
        if (s->def->steps[i].for_each != NULL && s->steps[i].attempts > 0 &&
            s->steps[i].status != SAGA_STEP_NOT_RUN)
            return 1;
    return 0;
}

static json_t *get_json(PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col)
               ? NULL
               : saga__json_from_pg(PQgetvalue(r, row, col), JSON_DECODE_ANY, NULL);
}

/* Rows arrive ordered by saga, step and index: each step's elements are
 * allocated at its first row, as many as its last index says. */
static int fill(saga_state *s, PGresult *r, int from, int to, saga_error *err)
{
    for (int row = from; row < to;) {
        int step = atoi(PQgetvalue(r, row, 1)), end = row, n;
        saga_step_state *st;
        while (end < to && atoi(PQgetvalue(r, end, 1)) == step)
            end++;
        n = atoi(PQgetvalue(r, end - 1, 2)) + 1;
        if (step < 0 || step >= s->nsteps || n <= 0 || n > SAGA_ELEMENTS_MAX ||
            s->steps[step].elements != NULL) {
            row = end;
            continue;
        }
        st = &s->steps[step];
        if ((st->elements = calloc((size_t)n, sizeof *st->elements)) == NULL)
            return saga__error_set(err, SAGA_ENOMEM, "out of memory");
        st->nelements = n;
        for (; row < end; row++) {
            int e = atoi(PQgetvalue(r, row, 2));
            saga_step_state *el;
            if (e < 0 || e >= n)
                continue;
            el = &st->elements[e];
            saga_step_status_parse(PQgetvalue(r, row, 3), &el->status);
            el->attempts = atoi(PQgetvalue(r, row, 4));
            el->attempt_base = atoi(PQgetvalue(r, row, 5));
            el->awaiting = PQgetvalue(r, row, 6)[0] == 't';
            el->due_at = saga__pg_get_i64(r, row, 7);
            el->started_at = saga__pg_get_i64(r, row, 8);
            el->finished_at = saga__pg_get_i64(r, row, 9);
            el->output = get_json(r, row, 10);
            el->error = get_json(r, row, 11);
        }
    }
    return SAGA_OK;
}

int saga__batch_load_elements(PGconn *db, saga_state **states, int n, saga_error *err)
{
    size_t cap = 3, len = 0;
    char *arr;
    const char *p[1];
    PGresult *r;
    int rc = SAGA_OK, any = 0;

    for (int i = 0; i < n; i++)
        if (states[i] != NULL && has_elements(states[i])) {
            cap += SAGA_ID_LEN + 1;
            any = 1;
        }
    if (!any)
        return SAGA_OK;
    if ((arr = malloc(cap)) == NULL)
        return saga__error_set(err, SAGA_ENOMEM, "out of memory");
    arr[len++] = '{';
    for (int i = 0; i < n; i++)
        if (states[i] != NULL && has_elements(states[i])) {
            if (len > 1)
                arr[len++] = ',';
            memcpy(arr + len, states[i]->id, SAGA_ID_LEN);
            len += SAGA_ID_LEN;
        }
    arr[len++] = '}';
    arr[len] = '\0';
    p[0] = arr;
    r = PQexecPrepared(db, "saga_load_elements", 1, p, NULL, NULL, 0);
    free(arr);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        saga_pgerr_note(r);
        rc = saga__error_set(err, SAGA_EDB, "loading fan-out elements: %s",
                             PQerrorMessage(db));
        PQclear(r);
        return rc;
    }
    for (int row = 0; row < PQntuples(r) && rc == SAGA_OK;) {
        const char *id = PQgetvalue(r, row, 0);
        int end = row;
        while (end < PQntuples(r) && strcmp(PQgetvalue(r, end, 0), id) == 0)
            end++;
        for (int i = 0; i < n; i++)
            if (states[i] != NULL && strcmp(states[i]->id, id) == 0) {
                rc = fill(states[i], r, row, end, err);
                break;
            }
        row = end;
    }
    PQclear(r);
    return rc;
}
