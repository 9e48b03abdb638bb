/* saga_attention.h - what the operator console reads besides sagas
 * themselves (docs/CONSOLE.md): the sagas that need attention, counts by
 * status and definition, and each service's breaker and bulkhead as the
 * sagad instances last reported them. Read-only; each call is one
 * statement on db, the JSON built by PostgreSQL; thread safety: one
 * connection per thread. */
#ifndef SAGA_ATTENTION_H
#define SAGA_ATTENTION_H

#include <stdint.h>

#include <libpq-fe.h>

#include "saga/error.h"

/* Sagas that need an operator, as {"older_than_ms", "sagas": [...],
 * "more", "counts": [{"definition", "failed", "stalled"}],
 * "oldest_stalled_seconds": {"running", "compensating", "failed"}} into
 * *json (new, the caller frees it). The sagas: every failed one first,
 * then running or compensating ones whose last progress is older than
 * older_ms; each group oldest first, at most limit in all, each with id,
 * name, version, status, business_key, step_index, step, step_status,
 * attempts, error (the step's last), since, idle_seconds, last_event and
 * failed_reason (why the machine stopped it). The oldest ages are
 * saga_oldest_unprogressing_seconds's (saga_observe.c) definition.
 * SAGA_EDB when the database fails. */
int saga_read_attention(PGconn *db, int64_t older_ms, int limit, char **json,
                        saga_error *err);

/* Counts: {"by_status": {...}, "by_definition": {name: {status: n}},
 * "started": {"last_minute", "last_hour"}, "finished": {...}} (the
 * figures `sagactl stats` shows). One pass over the sagas. SAGA_EDB. */
int saga_read_counts(PGconn *db, char **json, saga_error *err);

/* saga.service_health as a JSON array, one row per service and sagad
 * instance: service, instance, breaker, consecutive_failures,
 * open_until, opened_total, in_flight, max_in_flight, held_breaker,
 * held_bulkhead, reported_seconds_ago. SAGA_EDB. */
int saga_read_service_health(PGconn *db, char **json, saga_error *err);

#endif
