/* saga_tally.h - metric updates that wait for a transaction's fate.
 *
 * The engine learns what a batch did (steps dispatched, replies applied,
 * sagas finished) while its PostgreSQL transaction is still open; a
 * rollback means the same events are consumed and applied again. So the
 * updates are noted here and reach the registry only on commit.
 *
 * Label values are borrowed: they must live until the commit or reset
 * (the engine passes definition strings, which live as long as it does,
 * and static text). Thread safety: none (one engine loop). */
#ifndef SAGA_TALLY_H
#define SAGA_TALLY_H

#include "saga_metrics.h"

typedef struct saga_tally_item {
    saga_metric *family;
    const char *labels[SAGA_METRIC_MAX_LABELS];
    double value;
    int observe; /* histogram observation; else a counter increment */
} saga_tally_item;

typedef struct saga_tally {
    saga_tally_item *items;
    int n, cap;
} saga_tally;

/* Note an increment (observe 0) or an observation (observe 1) of family
 * (NULL: ignored) with the label values l0, l1, l2 in the family's order
 * (NULL after the last one; all NULL for a family without labels). Out of
 * memory drops the update: metrics are not worth failing a transaction
 * for. */
void saga_tally_note(saga_tally *t, saga_metric *family, int observe, double value,
                     const char *l0, const char *l1, const char *l2);

/* Apply every noted update to the registry, then forget them. */
void saga_tally_commit(saga_tally *t);

/* Forget the noted updates (the transaction rolled back). */
void saga_tally_reset(saga_tally *t);

/* Free the storage. */
void saga_tally_free(saga_tally *t);

#endif
