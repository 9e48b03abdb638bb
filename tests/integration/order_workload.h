/* The order workload shared by the crash and multi-instance tests: order
 * sagas (tests/integration/crash_sagas) whose customers and stock make some
 * of them fail for business reasons, and the checks that every saga ended
 * and the participants' state is exactly what the final statuses imply. */
#ifndef SAGA_IT_ORDER_WORKLOAD_H
#define SAGA_IT_ORDER_WORKLOAD_H

#include <libpq-fe.h>

#include "saga_store.h"

/* Customers (one in ten short of credit) and stock (one scarce item). */
void ow_seed(PGconn *db);

/* Start n sagas in one transaction, the way sagactl start does, with
 * idempotency keys <prefix><wave*1000+i>. */
void ow_start_wave(PGconn *db, saga_defs *defs, const char *prefix, int n, int wave);

/* Wait up to timeout_s for every saga of this run to end; returns how many
 * are still running or compensating. */
long long ow_wait_all(PGconn *db, const char *prefix, int timeout_s);

typedef struct ow_counts {
    long long total, completed, compensated, failed, unfinished;
} ow_counts;

/* Count the run's sagas by outcome and assert (cmocka) that expected
 * sagas ran, all ended, none failed, and that no effect was doubled or
 * leaked in any participant. */
void ow_check(PGconn *db, const char *prefix, long long expected, ow_counts *out);

/* Sum the "N <word>" figures of the "stopped:" lines in the logs named
 * pattern (a shell glob under <build>/tests/logs). */
long long ow_sum_stat(const char *pattern, const char *word);

#endif
