/* The order workload shared by the crash and multi-instance tests: order
 * sagas (tests/integration/crash_sagas) whose customers and stock make some
 * of them fail for business reasons, and the checks that every saga ended
 * and the participants' state is exactly what the final statuses imply. */
#ifndef SAGA_IT_ORDER_WORKLOAD_H
#define SAGA_IT_ORDER_WORKLOAD_H

#include <libpq-fe.h>

#include "harness.h"
#include "saga_store.h"

enum { OW_NSVC = 3, OW_ORDER = 0, OW_PAYMENT = 1, OW_INVENTORY = 2 };
/* The example services the workload runs on. */
extern const char *const ow_services[OW_NSVC];

/* A run of its own: a database for name (it_isolate_db), a fresh topic
 * prefix (SAGA_TOPIC_PREFIX; *prefix is malloc()ed, free it), the schema
 * migrated, *db connected. Returns 0, or -1 when migrating failed. */
int ow_setup(const char *name, PGconn **db, char **prefix);

/* Start example service ow_services[i] as <label>-<service>-<n> and wait
 * until it is ready (cmocka assertions). */
void ow_start_service(it_proc *p, int i, const char *label, int n);

/* Stop what is running of procs[0..n) (pid > 0). */
void ow_stop_all(it_proc *procs, int n);

/* Customers (one in ten short of credit) and stock (one scarce item). */
void ow_seed(PGconn *db);

/* Create n sagas and their first commands in one transaction, directly in
 * the database (sagad relays them from the outbox), with
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
