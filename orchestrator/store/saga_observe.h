/* saga_observe.h - sagad's periodic look at the whole picture: gauges read
 * from PostgreSQL (sagas per status, how long the oldest one has not
 * moved, the outbox) and the gate's per-service state, published to the
 * metrics registry and to saga.service_health for `sagactl stats`.
 *
 * Thin I/O: one statement each, run from the engine loop every few
 * seconds, outside the engine's transactions. */
#ifndef SAGA_OBSERVE_H
#define SAGA_OBSERVE_H

#include <stdint.h>

#include <libpq-fe.h>

#include "saga/error.h"
#include "saga_gate.h"
#include "saga_metrics.h"

/* Set m->sagas_by_status and m->oldest_stalled for running, compensating
 * and failed (0 when there are none; "oldest" counts from progressed_at,
 * the saga's last status change or step status change, so retries and
 * holds do not reset it) and m->outbox_pending. With with_finished, also
 * m->sagas_by_status for completed, compensated and resolved: a count over
 * the whole history (an index-only scan, but one that grows with it), so
 * the caller asks for it less often (sagad every 12 intervals, adding the
 * sagas it finishes itself in between). Returns SAGA_OK or SAGA_EDB (err says
 * why; the gauges keep their values). */
int saga_observe_sagas(PGconn *db, int with_finished, const saga_std_metrics *m,
                       saga_error *err);

/* Set the breaker-state and in-flight gauges from g (now_ms: ms since the
 * epoch, the gate's clock) and upsert one saga.service_health row per
 * service under instance. SAGA_OK, SAGA_EDB, SAGA_ENOMEM. */
int saga_observe_services(PGconn *db, const char *instance, const saga_gate *g,
                          int64_t now_ms, const saga_std_metrics *m, saga_error *err);

#endif
