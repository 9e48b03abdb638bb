/* saga_breaker.c - circuit breakers per service, a pure state machine. */
#include <stdlib.h>
#include <string.h>

#include "saga/error.h"
#include "saga_breaker.h"

typedef struct entry {
    char *service; /* NULL: free slot */
    saga_breaker_state state;
    int failures;
    int64_t open_until;
    int64_t cooldown;
    int probe_out; /* half-open: the probe is out */
    int64_t probe_at;
    int64_t last_used; /* for choosing which closed service to forget */
    uint64_t opened;
    uint64_t rejected;
} entry;

struct saga_breaker {
    saga_breaker_config cfg;
    entry *entries; /* cfg.max_services slots; a linear scan is cheap at this size */
    int n;
};

int saga_breaker_new(const saga_breaker_config *cfg, saga_breaker **out)
{
    saga_breaker *b;
    if (out == NULL)
        return SAGA_EINVAL;
    *out = NULL;
    b = calloc(1, sizeof *b);
    if (b == NULL)
        return SAGA_ENOMEM;
    if (cfg != NULL)
        b->cfg = *cfg;
    if (b->cfg.failure_threshold <= 0)
        b->cfg.failure_threshold = 5;
    if (b->cfg.cooldown_ms <= 0)
        b->cfg.cooldown_ms = 30000;
    if (b->cfg.cooldown_factor <= 0)
        b->cfg.cooldown_factor = 2;
    if (b->cfg.max_cooldown_ms <= 0)
        b->cfg.max_cooldown_ms = 10 * b->cfg.cooldown_ms;
    if (b->cfg.max_cooldown_ms < b->cfg.cooldown_ms)
        b->cfg.max_cooldown_ms = b->cfg.cooldown_ms;
    if (b->cfg.probe_timeout_ms <= 0)
        b->cfg.probe_timeout_ms = b->cfg.cooldown_ms;
    if (b->cfg.max_services <= 0)
        b->cfg.max_services = 256;
    b->entries = calloc((size_t)b->cfg.max_services, sizeof *b->entries);
    if (b->entries == NULL) {
        free(b);
        return SAGA_ENOMEM;
    }
    *out = b;
    return SAGA_OK;
}

void saga_breaker_free(saga_breaker *b)
{
    if (b == NULL)
        return;
    for (int i = 0; i < b->n; i++)
        free(b->entries[i].service);
    free(b->entries);
    free(b);
}

static entry *find(const saga_breaker *b, const char *service)
{
    for (int i = 0; i < b->n; i++)
        if (strcmp(b->entries[i].service, service) == 0)
            return &b->entries[i];
    return NULL;
}

/* Track service: a new slot, or the least recently used closed service
 * without failures (forgetting it loses nothing but its counters). */
static entry *track(saga_breaker *b, const char *service, int64_t now_ms)
{
    entry *e = find(b, service), *victim = NULL;
    char *name;
    if (e != NULL)
        return e;
    if (b->n < b->cfg.max_services) {
        victim = &b->entries[b->n];
    } else {
        for (int i = 0; i < b->n; i++) {
            entry *c = &b->entries[i];
            if (c->state == SAGA_BREAKER_CLOSED && c->failures == 0 &&
                (victim == NULL || c->last_used < victim->last_used))
                victim = c;
        }
        if (victim == NULL)
            return NULL;
    }
    name = strdup(service);
    if (name == NULL)
        return NULL;
    if (victim == &b->entries[b->n])
        b->n++;
    free(victim->service);
    memset(victim, 0, sizeof *victim);
    victim->service = name;
    victim->cooldown = b->cfg.cooldown_ms;
    victim->last_used = now_ms;
    return victim;
}

static void open_now(entry *e, int64_t now_ms)
{
    e->state = SAGA_BREAKER_OPEN;
    e->open_until = now_ms + e->cooldown;
    e->probe_out = 0;
    e->opened++;
}

saga_breaker_decision saga_breaker_allow(saga_breaker *b, const char *service,
                                         int64_t now_ms, int64_t *wait_until_ms)
{
    entry *e;
    if (b == NULL || service == NULL)
        return SAGA_BREAKER_ALLOW;
    /* An untracked service is closed without failures: no need to track it. */
    e = find(b, service);
    if (e == NULL)
        return SAGA_BREAKER_ALLOW;
    e->last_used = now_ms;
    switch (e->state) {
    case SAGA_BREAKER_CLOSED:
        return SAGA_BREAKER_ALLOW;
    case SAGA_BREAKER_OPEN:
        if (now_ms < e->open_until) {
            e->rejected++;
            if (wait_until_ms != NULL)
                *wait_until_ms = e->open_until;
            return SAGA_BREAKER_REJECT;
        }
        e->state = SAGA_BREAKER_HALF_OPEN;
        e->probe_out = 1;
        e->probe_at = now_ms;
        return SAGA_BREAKER_ALLOW;
    case SAGA_BREAKER_HALF_OPEN:
        if (e->probe_out && now_ms < e->probe_at + b->cfg.probe_timeout_ms) {
            e->rejected++;
            if (wait_until_ms != NULL)
                *wait_until_ms = e->probe_at + b->cfg.probe_timeout_ms;
            return SAGA_BREAKER_REJECT;
        }
        /* No probe out, or the last one is lost: this one is the probe. */
        e->probe_out = 1;
        e->probe_at = now_ms;
        return SAGA_BREAKER_ALLOW;
    }
    return SAGA_BREAKER_ALLOW;
}

int saga_breaker_record(saga_breaker *b, const char *service,
                        saga_breaker_outcome outcome, int64_t now_ms)
{
    entry *e;
    if (b == NULL || service == NULL)
        return SAGA_EINVAL;
    if (outcome != SAGA_BREAKER_SUCCESS && outcome != SAGA_BREAKER_FAILURE &&
        outcome != SAGA_BREAKER_CANCELLED)
        return SAGA_EINVAL;
    if (outcome != SAGA_BREAKER_FAILURE) {
        /* Success or cancel on an untracked (closed, no failures) service
         * changes nothing; do not spend a slot on it. */
        e = find(b, service);
        if (e == NULL)
            return SAGA_OK;
    } else if ((e = track(b, service, now_ms)) == NULL) {
        return SAGA_ENOMEM;
    }
    e->last_used = now_ms;
    switch (e->state) {
    case SAGA_BREAKER_CLOSED:
        if (outcome == SAGA_BREAKER_SUCCESS) {
            e->failures = 0;
        } else if (outcome == SAGA_BREAKER_FAILURE &&
                   ++e->failures >= b->cfg.failure_threshold) {
            e->cooldown = b->cfg.cooldown_ms;
            open_now(e, now_ms);
        }
        break;
    case SAGA_BREAKER_OPEN:
        /* From commands sent before it opened: the probe decides. */
        break;
    case SAGA_BREAKER_HALF_OPEN:
        if (outcome == SAGA_BREAKER_SUCCESS) {
            e->state = SAGA_BREAKER_CLOSED;
            e->failures = 0;
            e->probe_out = 0;
            e->cooldown = b->cfg.cooldown_ms;
        } else if (outcome == SAGA_BREAKER_FAILURE) {
            int64_t grown = e->cooldown * b->cfg.cooldown_factor;
            /* Compare before multiplying again so a long run cannot overflow. */
            e->cooldown = grown > b->cfg.max_cooldown_ms || grown < e->cooldown
                              ? b->cfg.max_cooldown_ms
                              : grown;
            e->failures++;
            open_now(e, now_ms);
        } else {
            e->probe_out = 0;
        }
        break;
    }
    return SAGA_OK;
}

static void fill(const entry *e, int64_t now_ms, saga_breaker_info *out)
{
    out->state = e->state;
    if (e->state == SAGA_BREAKER_OPEN && now_ms >= e->open_until)
        out->state = SAGA_BREAKER_HALF_OPEN;
    out->consecutive_failures = e->failures;
    out->open_until_ms = e->state == SAGA_BREAKER_OPEN ? e->open_until : 0;
    out->cooldown_ms = e->cooldown;
    out->opened_total = e->opened;
    out->rejected_total = e->rejected;
}

int saga_breaker_get(const saga_breaker *b, const char *service, int64_t now_ms,
                     saga_breaker_info *out)
{
    const entry *e;
    if (b == NULL || service == NULL || out == NULL)
        return SAGA_EINVAL;
    if ((e = find(b, service)) == NULL)
        return SAGA_ENOTFOUND;
    fill(e, now_ms, out);
    return SAGA_OK;
}

void saga_breaker_foreach(const saga_breaker *b, int64_t now_ms, saga_breaker_visit_fn fn,
                          void *arg)
{
    if (b == NULL || fn == NULL)
        return;
    for (int i = 0; i < b->n; i++) {
        saga_breaker_info info;
        fill(&b->entries[i], now_ms, &info);
        fn(b->entries[i].service, &info, arg);
    }
}

const char *saga_breaker_state_name(saga_breaker_state s)
{
    switch (s) {
    case SAGA_BREAKER_CLOSED:
        return "closed";
    case SAGA_BREAKER_OPEN:
        return "open";
    case SAGA_BREAKER_HALF_OPEN:
        return "half_open";
    }
    return "?";
}
