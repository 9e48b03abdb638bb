/* saga_machine_state.c - a saga's state as data: status names and parsing,
 * making and freeing states and action lists, the retry back-off, and the
 * template context of inputs and outputs. Pure. */
#include "saga_machine_internal.h"

static const char *const status_names[] = {
    "new", "running", "compensating", "completed", "compensated", "failed", "resolved"};
static const char *const step_status_names[] = {
    "pending",      "dispatched",  "succeeded",           "failed",  "unknown",
    "compensating", "compensated", "compensation_failed", "skipped", "not_run"};

const char *saga_status_name(saga_status s)
{
    return (unsigned)s < SAGA_STATUS_COUNT ? status_names[s] : "?";
}

int saga_status_parse(const char *text, saga_status *out)
{
    for (int i = 0; i < SAGA_STATUS_COUNT; i++)
        if (text != NULL && strcmp(text, status_names[i]) == 0) {
            *out = (saga_status)i;
            return 0;
        }
    return -1;
}

const char *saga_step_status_name(saga_step_status s)
{
    return (unsigned)s < SAGA_STEP_STATUS_COUNT ? step_status_names[s] : "?";
}

int saga_step_status_parse(const char *text, saga_step_status *out)
{
    for (int i = 0; i < SAGA_STEP_STATUS_COUNT; i++)
        if (text != NULL && strcmp(text, step_status_names[i]) == 0) {
            *out = (saga_step_status)i;
            return 0;
        }
    return -1;
}

int saga_status_is_final(saga_status s)
{
    return s == SAGA_ST_COMPLETED || s == SAGA_ST_COMPENSATED || s == SAGA_ST_RESOLVED;
}

saga_state *saga_state_new(const saga_definition *def, const char *id, json_t *input)
{
    saga_state *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    s->steps = calloc((size_t)def->nsteps, sizeof *s->steps);
    if (s->steps == NULL) {
        free(s);
        return NULL;
    }
    s->def = def;
    s->nsteps = def->nsteps;
    strncpy(s->id, id, SAGA_ID_LEN);
    s->input = input != NULL ? json_incref(input) : json_object();
    s->parent_step = -1;
    return s;
}

void saga_state_free(saga_state *s)
{
    if (s == NULL)
        return;
    for (int i = 0; i < s->nsteps; i++) {
        for (int e = 0; e < s->steps[i].nelements && s->steps[i].elements; e++) {
            json_decref(s->steps[i].elements[e].output);
            json_decref(s->steps[i].elements[e].error);
        }
        free(s->steps[i].elements);
        json_decref(s->steps[i].output);
        json_decref(s->steps[i].error);
    }
    free(s->steps);
    json_decref(s->input);
    free(s);
}

void saga_actions_clear(saga_actions *a)
{
    for (int i = 0; i < a->n; i++) {
        json_decref(a->items[i].payload);
        json_decref(a->items[i].detail);
    }
    free(a->items);
    memset(a, 0, sizeof *a);
}

int64_t saga_backoff_ms(const saga_retry_policy *p, int attempt, double random)
{
    double d = (double)p->backoff_ms;
    for (int i = 1; i < attempt && d < (double)p->max_backoff_ms; i++)
        d *= p->multiplier;
    if (d > (double)p->max_backoff_ms)
        d = (double)p->max_backoff_ms;
    /* Jitter spreads retries of many sagas so they do not arrive together. */
    d *= 1.0 + p->jitter * (2.0 * random - 1.0);
    return d < 1.0 ? 1 : (int64_t)d;
}

json_t *saga_state_context(const saga_state *s)
{
    json_t *steps = json_object();
    for (int i = 0; i < s->nsteps; i++)
        if (s->steps[i].output != NULL && s->def->steps[i].name != NULL)
            json_object_set_new(steps, s->def->steps[i].name,
                                json_pack("{s:O}", "output", s->steps[i].output));
    return json_pack("{s:O, s:o, s:{s:s, s:s, s:i}}", "input", s->input, "steps", steps,
                     "saga", "id", s->id, "name", s->def->name, "version",
                     s->def->version);
}
