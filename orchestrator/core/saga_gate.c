/* The dispatch gate: breaker + bulkhead per service (see saga_gate.h). */
#include <stdlib.h>
#include <string.h>

#include "saga_bulkhead.h"
#include "saga_gate.h"
#include "saga_shared.h"

#define MAX_SERVICES   256
#define NO_DEADLINE_MS 60000
#define HELD_MAX       1024

typedef struct held {
    char saga_id[37];
    int64_t until;
    int svc;
} held;

typedef struct gate_service {
    char *name;
    uint64_t held_breaker, held_bulkhead;
    /* Holds of the open transaction: added to the totals on commit. */
    uint64_t pend_breaker, pend_bulkhead;
    held *ring; /* sagas held by the bulkhead, oldest first */
    int head, count;
} gate_service;

/* A command holding a bulkhead slot. */
typedef struct slot {
    char *id;
    int svc;
    int64_t expires;
    struct slot *next;
} slot;

typedef struct admitted {
    char *id; /* NULL when no slot was taken */
    int svc;
    int probe;
} admitted;

typedef struct settled {
    char *id;
    int svc;
    saga_gate_outcome outcome;
} settled;

struct saga_gate {
    saga_gate_config cfg;
    saga_breaker *breaker;
    saga_bulkhead *bulkhead;
    gate_service services[MAX_SERVICES];
    int nservices;
    slot **buckets;
    size_t nbuckets, nslots;
    admitted *adm;
    int nadm, capadm;
    settled *set;
    int nset, capset;
    held *pheld; /* holds of the open transaction */
    int npheld, cappheld;
};

static size_t hash(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    while (*s)
        h = (h ^ (unsigned char)*s++) * 1099511628211ull;
    return (size_t)(h & (n - 1));
}

static int service_index(saga_gate *g, const char *name)
{
    for (int i = 0; i < g->nservices; i++)
        if (strcmp(g->services[i].name, name) == 0)
            return i;
    if (g->nservices == MAX_SERVICES)
        return -1;
    if ((g->services[g->nservices].name = strdup(name)) == NULL)
        return -1;
    return g->nservices++;
}

static slot **slot_find(saga_gate *g, const char *id)
{
    slot **p = &g->buckets[hash(id, g->nbuckets)];
    while (*p != NULL && strcmp((*p)->id, id) != 0)
        p = &(*p)->next;
    return p;
}

static int slots_grow(saga_gate *g)
{
    size_t n = g->nbuckets * 2;
    slot **b = calloc(n, sizeof *b);
    if (b == NULL)
        return -1;
    for (size_t i = 0; i < g->nbuckets; i++)
        for (slot *s = g->buckets[i], *next; s != NULL; s = next) {
            size_t h = hash(s->id, n);
            next = s->next;
            s->next = b[h];
            b[h] = s;
        }
    free(g->buckets);
    g->buckets = b;
    g->nbuckets = n;
    return 0;
}

/* Free the slot at *p (found by slot_find) and its bulkhead place. */
static void slot_drop(saga_gate *g, slot **p)
{
    slot *s = *p;
    *p = s->next;
    saga_bulkhead_release(g->bulkhead, g->services[s->svc].name);
    free(s->id);
    free(s);
    g->nslots--;
}

static int parse_limits(saga_gate *g, const char *text, saga_error *err)
{
    const char *p = text;
    while (p != NULL && *p != '\0') {
        const char *end = strchr(p, ','), *eq;
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char name[256], *stop;
        long n;
        eq = memchr(p, '=', len);
        if (eq == NULL || eq == p || (size_t)(eq - p) >= sizeof name)
            return saga__error_set(
                err, SAGA_EINVAL, "service limits \"%s\": expected SERVICE=N at \"%.*s\"",
                text, (int)len, p);
        memcpy(name, p, (size_t)(eq - p));
        name[eq - p] = '\0';
        n = strtol(eq + 1, &stop, 10);
        if (stop == eq + 1 || stop != p + len || n < 0 || n > 1000000)
            return saga__error_set(err, SAGA_EINVAL,
                                   "service limits \"%s\": the cap of %s must be a whole "
                                   "number from 0 (unlimited) to 1000000, not \"%.*s\"",
                                   text, name, (int)(p + len - eq - 1), eq + 1);
        if (saga_bulkhead_set_limit(g->bulkhead, name, (int)n) != SAGA_OK)
            return saga__error_set(err, SAGA_ENOMEM, "service limits: too many services");
        p = end ? end + 1 : NULL;
    }
    return SAGA_OK;
}

int saga_gate_new(const saga_gate_config *cfg, saga_gate **out, saga_error *err)
{
    saga_gate *g;
    int rc;
    if (out == NULL)
        return saga__error_set(err, SAGA_EINVAL, "saga_gate_new: out is NULL");
    *out = NULL;
    if ((g = calloc(1, sizeof *g)) == NULL)
        return saga__error_set(err, SAGA_ENOMEM, "out of memory");
    if (cfg != NULL)
        g->cfg = *cfg;
    g->cfg.service_limits = NULL; /* not kept */
    if (g->cfg.recheck_ms <= 0)
        g->cfg.recheck_ms = 1000;
    if (g->cfg.slot_grace_ms <= 0)
        g->cfg.slot_grace_ms = 2000;
    if (g->cfg.max_in_flight < 0) {
        free(g);
        return saga__error_set(err, SAGA_EINVAL,
                               "max in flight per service must be 0 (unlimited) or more");
    }
    g->nbuckets = 64;
    g->buckets = calloc(g->nbuckets, sizeof *g->buckets);
    if (g->buckets == NULL ||
        saga_bulkhead_new(g->cfg.max_in_flight, MAX_SERVICES, &g->bulkhead) != SAGA_OK ||
        (!g->cfg.breaker_off &&
         saga_breaker_new(&g->cfg.breaker, &g->breaker) != SAGA_OK)) {
        saga_gate_free(g);
        return saga__error_set(err, SAGA_ENOMEM, "out of memory");
    }
    if (cfg != NULL && (rc = parse_limits(g, cfg->service_limits, err)) != SAGA_OK) {
        saga_gate_free(g);
        return rc;
    }
    *out = g;
    return SAGA_OK;
}

static void clear_pending(saga_gate *g)
{
    for (int i = 0; i < g->nadm; i++)
        free(g->adm[i].id);
    for (int i = 0; i < g->nset; i++)
        free(g->set[i].id);
    g->nadm = g->nset = g->npheld = 0;
    for (int i = 0; i < g->nservices; i++)
        g->services[i].pend_breaker = g->services[i].pend_bulkhead = 0;
}

void saga_gate_free(saga_gate *g)
{
    if (g == NULL)
        return;
    clear_pending(g);
    free(g->adm);
    free(g->set);
    free(g->pheld);
    for (size_t i = 0; g->buckets != NULL && i < g->nbuckets; i++)
        for (slot *s = g->buckets[i], *next; s != NULL; s = next) {
            next = s->next;
            free(s->id);
            free(s);
        }
    free(g->buckets);
    for (int i = 0; i < g->nservices; i++) {
        free(g->services[i].name);
        free(g->services[i].ring);
    }
    saga_breaker_free(g->breaker);
    saga_bulkhead_free(g->bulkhead);
    free(g);
}

static int64_t spread(int64_t base, int64_t span, double random)
{
    /* Up to +50% of span, so held sagas do not all come back at once. */
    return base + (int64_t)((double)span * 0.5 * random);
}

saga_gate_verdict saga_gate_admit(saga_gate *g, const char *service,
                                  const char *command_id, int64_t deadline_ms,
                                  int64_t now_ms, double random, int64_t *hold_until)
{
    int svc, probe = 0, limit;
    admitted a = {0};
    slot **p = NULL;

    if (g == NULL || service == NULL || command_id == NULL)
        return SAGA_GATE_SEND;
    if ((svc = service_index(g, service)) < 0)
        return SAGA_GATE_SEND; /* more services than tracked: fail open */
    if (saga__grow(&g->adm, &g->capadm, g->nadm + 1, sizeof *g->adm, 64) != SAGA_OK)
        return SAGA_GATE_SEND;
    /* The bulkhead first: a full service must not use up the breaker's probe. */
    limit = saga_bulkhead_limit(g->bulkhead, service);
    if (limit > 0) {
        p = slot_find(g, command_id);
        if (*p == NULL && saga_bulkhead_in_flight(g->bulkhead, service) >= limit) {
            g->services[svc].pend_bulkhead++;
            if (hold_until != NULL)
                *hold_until =
                    spread(now_ms + g->cfg.recheck_ms, g->cfg.recheck_ms, random);
            return SAGA_GATE_HOLD_BULKHEAD;
        }
    }
    if (g->breaker != NULL) {
        saga_breaker_info info;
        int64_t wait = 0;
        probe = saga_breaker_get(g->breaker, service, now_ms, &info) == SAGA_OK &&
                info.state == SAGA_BREAKER_HALF_OPEN;
        if (saga_breaker_allow(g->breaker, service, now_ms, &wait) ==
            SAGA_BREAKER_REJECT) {
            int open = saga_breaker_get(g->breaker, service, now_ms, &info) == SAGA_OK &&
                       info.state == SAGA_BREAKER_OPEN;
            g->services[svc].pend_breaker++;
            if (hold_until != NULL)
                /* Open: until the cool-down ends; probing: ask again soon,
                 * the probe's answer may come any moment. */
                *hold_until =
                    open ? spread(wait, g->cfg.recheck_ms, random)
                         : spread(now_ms + g->cfg.recheck_ms, g->cfg.recheck_ms, random);
            return SAGA_GATE_HOLD_BREAKER;
        }
    }
    a.svc = svc;
    a.probe = probe;
    if (limit > 0) {
        int64_t expires = (deadline_ms > 0 ? deadline_ms : now_ms + NO_DEADLINE_MS) +
                          g->cfg.slot_grace_ms;
        if (*p != NULL) {
            (*p)->expires = expires; /* the same command again: the same slot */
        } else {
            slot *s = calloc(1, sizeof *s);
            if (s == NULL || (s->id = strdup(command_id)) == NULL ||
                (a.id = strdup(command_id)) == NULL ||
                saga_bulkhead_acquire(g->bulkhead, service) != SAGA_OK) {
                if (s != NULL)
                    free(s->id);
                free(s);
                free(a.id);
                a.id = NULL;
            } else {
                s->svc = svc;
                s->expires = expires;
                s->next = *p;
                *p = s;
                if (++g->nslots > g->nbuckets)
                    slots_grow(g);
            }
        }
    }
    g->adm[g->nadm++] = a;
    return SAGA_GATE_SEND;
}

int saga_gate_settle(saga_gate *g, const char *service, const char *command_id,
                     saga_gate_outcome outcome, int64_t now_ms)
{
    settled s;
    (void)now_ms;
    if (g == NULL || service == NULL || command_id == NULL ||
        (outcome != SAGA_GATE_ANSWERED && outcome != SAGA_GATE_RETRY &&
         outcome != SAGA_GATE_TIMEOUT && outcome != SAGA_GATE_UNSENT))
        return SAGA_EINVAL;
    if ((s.svc = service_index(g, service)) < 0)
        return SAGA_ENOMEM;
    if (saga__grow(&g->set, &g->capset, g->nset + 1, sizeof *g->set, 64) != SAGA_OK)
        return SAGA_ENOMEM;
    if ((s.id = strdup(command_id)) == NULL)
        return SAGA_ENOMEM;
    s.outcome = outcome;
    g->set[g->nset++] = s;
    return SAGA_OK;
}

int saga_gate_note_held(saga_gate *g, const char *service, const char *saga_id,
                        int64_t until)
{
    held h = {{0}, until, 0};
    if (g == NULL || service == NULL || saga_id == NULL || strlen(saga_id) > 36)
        return SAGA_EINVAL;
    if ((h.svc = service_index(g, service)) < 0)
        return SAGA_ENOMEM;
    if (saga__grow(&g->pheld, &g->cappheld, g->npheld + 1, sizeof *g->pheld, 64) !=
        SAGA_OK)
        return SAGA_ENOMEM;
    memcpy(h.saga_id, saga_id, strlen(saga_id) + 1);
    g->pheld[g->npheld++] = h;
    return SAGA_OK;
}

static void ring_push(gate_service *s, const held *h)
{
    if (s->ring == NULL && (s->ring = malloc(sizeof *s->ring * HELD_MAX)) == NULL)
        return;
    if (s->count == HELD_MAX) { /* forget the oldest: it wakes on its own */
        s->head = (s->head + 1) % HELD_MAX;
        s->count--;
    }
    s->ring[(s->head + s->count++) % HELD_MAX] = *h;
}

int saga_gate_take_wakeable(saga_gate *g, char (*ids)[37], int64_t *untils, int max)
{
    int n = 0;
    if (g == NULL || ids == NULL || untils == NULL)
        return 0;
    for (int i = 0; i < g->nservices && n < max; i++) {
        gate_service *s = &g->services[i];
        int limit = saga_bulkhead_limit(g->bulkhead, s->name);
        int free_slots = limit - saga_bulkhead_in_flight(g->bulkhead, s->name);
        while (s->count > 0 && free_slots-- > 0 && n < max) {
            held *h = &s->ring[s->head];
            memcpy(ids[n], h->saga_id, sizeof ids[n]);
            untils[n++] = h->until;
            s->head = (s->head + 1) % HELD_MAX;
            s->count--;
        }
    }
    return n;
}

void saga_gate_commit(saga_gate *g, int64_t now_ms)
{
    if (g == NULL)
        return;
    for (int i = 0; i < g->npheld; i++)
        ring_push(&g->services[g->pheld[i].svc], &g->pheld[i]);
    for (int i = 0; i < g->nservices; i++) {
        g->services[i].held_breaker += g->services[i].pend_breaker;
        g->services[i].held_bulkhead += g->services[i].pend_bulkhead;
    }
    for (int i = 0; i < g->nset; i++) {
        settled *s = &g->set[i];
        slot **p = slot_find(g, s->id);
        if (*p != NULL)
            slot_drop(g, p);
        if (g->breaker != NULL)
            saga_breaker_record(g->breaker, g->services[s->svc].name,
                                s->outcome == SAGA_GATE_ANSWERED ? SAGA_BREAKER_SUCCESS
                                : s->outcome == SAGA_GATE_UNSENT ? SAGA_BREAKER_CANCELLED
                                                                 : SAGA_BREAKER_FAILURE,
                                now_ms);
    }
    clear_pending(g);
}

void saga_gate_abort(saga_gate *g, int64_t now_ms)
{
    if (g == NULL)
        return;
    for (int i = g->nadm - 1; i >= 0; i--) {
        admitted *a = &g->adm[i];
        if (a->id != NULL) {
            slot **p = slot_find(g, a->id);
            if (*p != NULL)
                slot_drop(g, p);
        }
        if (a->probe && g->breaker != NULL)
            saga_breaker_record(g->breaker, g->services[a->svc].name,
                                SAGA_BREAKER_CANCELLED, now_ms);
    }
    clear_pending(g);
}

int saga_gate_expire(saga_gate *g, int64_t now_ms)
{
    int n = 0;
    if (g == NULL || g->nslots == 0)
        return 0;
    for (size_t i = 0; i < g->nbuckets; i++) {
        slot **p = &g->buckets[i];
        while (*p != NULL) {
            if ((*p)->expires <= now_ms) {
                slot_drop(g, p);
                n++;
            } else {
                p = &(*p)->next;
            }
        }
    }
    return n;
}

void saga_gate_foreach(const saga_gate *g, int64_t now_ms, saga_gate_visit_fn fn,
                       void *arg)
{
    if (g == NULL || fn == NULL)
        return;
    for (int i = 0; i < g->nservices; i++) {
        const gate_service *s = &g->services[i];
        saga_gate_info info = {0};
        if (g->breaker == NULL ||
            saga_breaker_get(g->breaker, s->name, now_ms, &info.breaker) != SAGA_OK)
            info.breaker.state = SAGA_BREAKER_CLOSED;
        info.in_flight = saga_bulkhead_in_flight(g->bulkhead, s->name);
        info.limit = saga_bulkhead_limit(g->bulkhead, s->name);
        /* Like in_flight, these include the open transaction's holds. */
        info.held_breaker = s->held_breaker + s->pend_breaker;
        info.held_bulkhead = s->held_bulkhead + s->pend_bulkhead;
        fn(s->name, &info, arg);
    }
}
