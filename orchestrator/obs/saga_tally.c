/* Metric updates held until commit (see saga_tally.h). */
#include <stdlib.h>

#include "saga_tally.h"
#include "saga_shared.h"

void saga_tally_note(saga_tally *t, saga_metric *family, int observe, double value,
                     const char *l0, const char *l1, const char *l2)
{
    saga_tally_item *it;
    if (t == NULL || family == NULL)
        return;
    if (saga__grow(&t->items, &t->cap, t->n + 1, sizeof *t->items, 256) != SAGA_OK)
        return;
    it = &t->items[t->n++];
    it->family = family;
    it->labels[0] = l0;
    it->labels[1] = l1;
    it->labels[2] = l2;
    it->labels[3] = NULL;
    it->value = value;
    it->observe = observe;
}

void saga_tally_commit(saga_tally *t)
{
    if (t == NULL)
        return;
    for (int i = 0; i < t->n; i++) {
        saga_tally_item *it = &t->items[i];
        /* A family without labels takes NULL label values. */
        const char *const *l = it->labels[0] ? it->labels : NULL;
        if (it->observe)
            saga_metric_observe(it->family, l, it->value);
        else
            saga_metric_add(it->family, l, it->value);
    }
    t->n = 0;
}

void saga_tally_reset(saga_tally *t)
{
    if (t != NULL)
        t->n = 0;
}

void saga_tally_free(saga_tally *t)
{
    if (t == NULL)
        return;
    free(t->items);
    t->items = NULL;
    t->n = t->cap = 0;
}
