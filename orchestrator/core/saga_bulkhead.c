/* saga_bulkhead.c - in-flight caps per service. */
#include <stdlib.h>
#include <string.h>

#include "saga/error.h"
#include "saga_bulkhead.h"

typedef struct slot {
    char *service;
    int in_flight;
    int limit; /* own limit, when has_limit */
    int has_limit;
} slot;

struct saga_bulkhead {
    int default_limit;
    int max;
    int n;
    slot *slots;
};

int saga_bulkhead_new(int default_limit, int max_services, saga_bulkhead **out)
{
    saga_bulkhead *b;
    if (out == NULL)
        return SAGA_EINVAL;
    *out = NULL;
    if (default_limit < 0)
        return SAGA_EINVAL;
    b = calloc(1, sizeof *b);
    if (b == NULL)
        return SAGA_ENOMEM;
    b->default_limit = default_limit;
    b->max = max_services > 0 ? max_services : 256;
    b->slots = calloc((size_t)b->max, sizeof *b->slots);
    if (b->slots == NULL) {
        free(b);
        return SAGA_ENOMEM;
    }
    *out = b;
    return SAGA_OK;
}

void saga_bulkhead_free(saga_bulkhead *b)
{
    if (b == NULL)
        return;
    for (int i = 0; i < b->n; i++)
        free(b->slots[i].service);
    free(b->slots);
    free(b);
}

static slot *find(const saga_bulkhead *b, const char *service)
{
    for (int i = 0; i < b->n; i++)
        if (strcmp(b->slots[i].service, service) == 0)
            return &b->slots[i];
    return NULL;
}

/* A slot for service: an unused one, or one that holds nothing worth
 * keeping (no command in flight, no own limit). */
static slot *track(saga_bulkhead *b, const char *service)
{
    slot *s = find(b, service);
    char *name;
    if (s != NULL)
        return s;
    if (b->n < b->max) {
        s = &b->slots[b->n];
    } else {
        for (int i = 0; i < b->n && s == NULL; i++)
            if (b->slots[i].in_flight == 0 && !b->slots[i].has_limit)
                s = &b->slots[i];
        if (s == NULL)
            return NULL;
    }
    if ((name = strdup(service)) == NULL)
        return NULL;
    if (s == &b->slots[b->n])
        b->n++;
    free(s->service);
    memset(s, 0, sizeof *s);
    s->service = name;
    return s;
}

static int limit_of(const saga_bulkhead *b, const slot *s)
{
    return s != NULL && s->has_limit ? s->limit : b->default_limit;
}

int saga_bulkhead_set_limit(saga_bulkhead *b, const char *service, int limit)
{
    slot *s;
    if (b == NULL || service == NULL || limit < 0)
        return SAGA_EINVAL;
    if ((s = track(b, service)) == NULL)
        return SAGA_ENOMEM;
    s->limit = limit;
    s->has_limit = 1;
    return SAGA_OK;
}

int saga_bulkhead_acquire(saga_bulkhead *b, const char *service)
{
    slot *s;
    int cap;
    if (b == NULL || service == NULL)
        return SAGA_EINVAL;
    s = find(b, service);
    cap = limit_of(b, s);
    if (cap > 0 && s != NULL && s->in_flight >= cap)
        return SAGA_ESTATE;
    if (s == NULL && (s = track(b, service)) == NULL)
        return SAGA_ENOMEM;
    s->in_flight++;
    return SAGA_OK;
}

int saga_bulkhead_release(saga_bulkhead *b, const char *service)
{
    slot *s;
    if (b == NULL || service == NULL)
        return SAGA_EINVAL;
    s = find(b, service);
    if (s == NULL || s->in_flight == 0)
        return SAGA_ESTATE;
    s->in_flight--;
    return SAGA_OK;
}

int saga_bulkhead_in_flight(const saga_bulkhead *b, const char *service)
{
    const slot *s;
    if (b == NULL || service == NULL)
        return 0;
    s = find(b, service);
    return s != NULL ? s->in_flight : 0;
}

int saga_bulkhead_limit(const saga_bulkhead *b, const char *service)
{
    if (b == NULL)
        return 0;
    return limit_of(b, service != NULL ? find(b, service) : NULL);
}
