/* saga_metrics.h - a small metrics registry rendered in the Prometheus text
 * exposition format 0.0.4: counters, gauges and fixed-bucket histograms,
 * each a family with up to SAGA_METRIC_MAX_LABELS label names.
 *
 *   saga_metric *sagas;
 *   saga_metrics_counter(m, "saga_sagas_total", "Sagas that ended.",
 *                        (const char *[]){"definition", "outcome", NULL}, &sagas);
 *   saga_metric_add(sagas, (const char *[]){"order", "completed"}, 1);
 *
 * Thread safety: every function is thread-safe. The engine loop updates
 * and the HTTP server's thread renders; a mutex inside the registry
 * serialises them (an update holds it for one lookup, a render for one
 * pass over the series: microseconds at the sizes sagad has). A family
 * pointer stays valid until saga_metrics_free().
 *
 * Bounded: a family holds at most SAGA_METRIC_MAX_SERIES label
 * combinations; updates for more are refused (SAGA_ENOMEM), so a label fed
 * with unbounded values (a saga id) cannot eat the memory. */
#ifndef SAGA_METRICS_H
#define SAGA_METRICS_H

#include <stddef.h>

#define SAGA_METRIC_MAX_LABELS 4
#define SAGA_METRIC_MAX_SERIES 2000

typedef struct saga_metrics saga_metrics;
typedef struct saga_metric saga_metric; /* one family, owned by the registry */

/* Standard buckets (upper bounds, ascending; +Inf is implied). */
extern const double saga_metrics_latency_buckets[]; /* seconds, 1 ms .. 60 s */
extern const size_t saga_metrics_latency_nbuckets;
extern const double saga_metrics_commit_buckets[]; /* seconds, 0.5 ms .. 2.5 s */
extern const size_t saga_metrics_commit_nbuckets;
extern const double saga_metrics_batch_buckets[]; /* counts, 1 .. 1000 */
extern const size_t saga_metrics_batch_nbuckets;

/* Create an empty registry. *out is NULL on failure; owned by the caller
 * on success: saga_metrics_free(). SAGA_OK, SAGA_EINVAL, SAGA_ENOMEM. */
int saga_metrics_new(saga_metrics **out);

/* Free the registry and all its families. NULL is a no-op. No other thread
 * may be using it. */
void saga_metrics_free(saga_metrics *m);

/* Register a family. name must match [a-zA-Z_:][a-zA-Z0-9_:]*; help is any
 * text (escaped on output); label_names is a NULL-terminated array of at
 * most SAGA_METRIC_MAX_LABELS names matching [a-zA-Z_][a-zA-Z0-9_]*, not
 * starting with "__", distinct (NULL: no labels). Strings are copied. A
 * family without labels shows 0 from the start. *out (may be NULL) gets
 * a borrowed pointer. Returns SAGA_OK, SAGA_EINVAL (bad name or labels),
 * SAGA_EEXIST (name taken), SAGA_ENOMEM; nothing is registered on error. */
int saga_metrics_counter(saga_metrics *m, const char *name, const char *help,
                         const char *const *label_names, saga_metric **out);
int saga_metrics_gauge(saga_metrics *m, const char *name, const char *help,
                       const char *const *label_names, saga_metric **out);
/* As above, plus nbuckets (1..64) strictly increasing finite upper bounds;
 * the +Inf bucket is added. "le" may not be a label name. */
int saga_metrics_histogram(saga_metrics *m, const char *name, const char *help,
                           const char *const *label_names, const double *buckets,
                           size_t nbuckets, saga_metric **out);

/* Updates. label_values has one non-NULL string per label name of the
 * family, in the same order (NULL for a family without labels); values
 * are copied when a series is first seen. Returns SAGA_OK, SAGA_EINVAL
 * (NULL family or value, wrong kind of family, negative or NaN counter
 * increment, NaN observation), SAGA_ENOMEM (allocation, or the family is
 * at SAGA_METRIC_MAX_SERIES). Nothing changes on error. */
int saga_metric_add(saga_metric *f, const char *const *label_values,
                    double delta); /* counter, gauge */
int saga_metric_set(saga_metric *f, const char *const *label_values,
                    double value); /* gauge */
int saga_metric_observe(saga_metric *f, const char *const *label_values,
                        double value); /* histogram */

/* Read one series' value (counter, gauge) or observation count
 * (histogram) into *out; 0 for a series never updated. For tests and
 * sagactl-style summaries. SAGA_EINVAL for NULL arguments. */
int saga_metric_value(saga_metric *f, const char *const *label_values, double *out);

/* Render every family, in registration order, in the text format 0.0.4
 * into the caller's buffer, growing it with realloc() as getline() does:
 * *buf may be NULL with *cap 0; on return *buf is NUL-terminated, *len is
 * the text's length and *cap the buffer's size. The caller frees *buf
 * (also after an error). Returns SAGA_OK, SAGA_EINVAL, SAGA_ENOMEM (the
 * buffer then holds a prefix of the text). */
int saga_metrics_render(saga_metrics *m, char **buf, size_t *cap, size_t *len);

/* The families sagad exposes, registered in one go, so that the engine and
 * tests agree on names, labels and buckets. */
typedef struct saga_std_metrics {
    saga_metric *sagas_started;    /* counter {definition} */
    saga_metric *sagas_finished;   /* counter {definition, outcome}: saga_sagas_total */
    saga_metric *sagas_by_status;  /* gauge {status}: every status, whole database */
    saga_metric *oldest_stalled;   /* gauge {status}: seconds since the oldest saga in
                                      that status last progressed (progressed_at) */
    saga_metric *steps_dispatched; /* counter {service, action, phase} */
    saga_metric *steps_retried;    /* counter {service, action, phase}: attempts > 1 */
    saga_metric *step_timeouts;    /* counter {service, action, phase} */
    saga_metric *step_latency;     /* histogram {service, action, phase}: s */
    saga_metric *replies;          /* counter {service, status}: ok/failed/retry */
    saga_metric
        *replies_dropped; /* counter {reason}: duplicate/rejected/unknown/malformed */
    saga_metric *commands_sent;    /* counter {service}: acknowledged by Kafka */
    saga_metric *produce_errors;   /* counter: commands Kafka did not take or confirm */
    saga_metric *batch_size;       /* histogram: events per engine transaction */
    saga_metric *pg_commit;        /* histogram: the write-and-COMMIT pipeline, s */
    saga_metric *outbox_pending;   /* gauge: commands waiting to be sent */
    saga_metric *breaker_state;    /* gauge {service, state}: 1 for the current state */
    saga_metric *commands_held;    /* counter {service, reason}: breaker/bulkhead */
    saga_metric *in_flight;        /* gauge {service}: bulkhead slots taken */
    saga_metric *loop_ticks;       /* counter: engine loop iterations */
    saga_metric *dead_letters;     /* counter {source}: reply/timer/start_request */
    saga_metric *commands_refused; /* counter {service}: too large for the broker */
} saga_std_metrics;

/* Register the standard families in m (see saga_metrics.c for names and
 * help) and fill *out, only on success. Returns as saga_metrics_counter();
 * on error some families may be registered (free the registry). */
int saga_metrics_register_std(saga_metrics *m, saga_std_metrics *out);

#endif
