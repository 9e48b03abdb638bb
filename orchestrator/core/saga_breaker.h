/* saga_breaker.h - a circuit breaker per participant service: pure (no I/O,
 * no clock; time comes in as now_ms), bounded memory.
 *
 *   closed --N consecutive failures--> open --cool-down elapsed--> half-open
 *   half-open: exactly one probe command goes out;
 *              probe succeeds -> closed, probe fails -> open again (the
 *              cool-down grows by a factor, up to a cap).
 *
 * What counts: SAGA_BREAKER_FAILURE for transient trouble (a `retry` reply, a
 * timeout, a broker error producing the command); SAGA_BREAKER_SUCCESS for any
 * answer the service gave on its own (`ok`, and also a definite `failed`:
 * the service is healthy, the business said no). Outcomes that arrive while
 * the breaker is open come from commands sent before it opened; they do not
 * change it: only the probe decides.
 *
 * Thread safety: none. One breaker is used by one thread (the engine loop);
 * metrics read it through saga_breaker_foreach() from that same thread
 * (e.g. into a saga_metrics registry, which is itself thread-safe). */
#ifndef SAGA_BREAKER_H
#define SAGA_BREAKER_H

#include <stdint.h>

typedef enum saga_breaker_state {
    SAGA_BREAKER_CLOSED = 0,
    SAGA_BREAKER_OPEN,
    SAGA_BREAKER_HALF_OPEN,
} saga_breaker_state;

typedef enum saga_breaker_outcome {
    SAGA_BREAKER_SUCCESS = 0, /* the service answered (ok or a definite failed) */
    SAGA_BREAKER_FAILURE,     /* retry reply, timeout, broker error */
    /* The command allow() let through was not sent after all: frees the
     * half-open probe slot without a verdict. No effect in other states. */
    SAGA_BREAKER_CANCELLED,
} saga_breaker_outcome;

typedef enum saga_breaker_decision {
    SAGA_BREAKER_ALLOW = 0, /* send the command */
    SAGA_BREAKER_REJECT,    /* hold it until *wait_until_ms, then ask again */
} saga_breaker_decision;

typedef struct saga_breaker_config {
    int failure_threshold; /* consecutive failures that open; <= 0: 5 */
    int64_t cooldown_ms;   /* the first open period; <= 0: 30000 */
    /* After a failed probe the cool-down is multiplied by this (>= 1; <= 0
     * means 2), capped at max_cooldown_ms (<= 0: 10 * cooldown_ms). A
     * factor of 1 keeps it constant. */
    int cooldown_factor;
    int64_t max_cooldown_ms;
    /* A probe not answered within this is taken as lost and the next
     * allow() sends another one (the engine records a timeout first in
     * practice; this keeps a lost probe from wedging the breaker).
     * <= 0: cooldown_ms. */
    int64_t probe_timeout_ms;
    int max_services; /* bound on tracked services; <= 0: 256 */
} saga_breaker_config;

/* What saga_breaker_get() and saga_breaker_foreach() report. */
typedef struct saga_breaker_info {
    saga_breaker_state state; /* effective at the now_ms asked about */
    int consecutive_failures;
    int64_t open_until_ms;   /* open: when the next probe may go */
    int64_t cooldown_ms;     /* the current (possibly grown) cool-down */
    uint64_t opened_total;   /* times it went to open */
    uint64_t rejected_total; /* allow() calls answered REJECT */
} saga_breaker_info;

typedef struct saga_breaker saga_breaker;

/* Create a breaker set. cfg may be NULL (all defaults). *out is set to NULL
 * first and owned by the caller on success: saga_breaker_free().
 * Returns SAGA_OK, SAGA_EINVAL (out NULL) or SAGA_ENOMEM. */
int saga_breaker_new(const saga_breaker_config *cfg, saga_breaker **out);

/* Free b and everything it tracks. NULL is a no-op. */
void saga_breaker_free(saga_breaker *b);

/* May a command for service go out at now_ms? ALLOW or REJECT; on REJECT
 * *wait_until_ms (if not NULL) is when asking again can succeed. An allow
 * in half-open hands out the single probe. A service never seen is closed.
 * When max_services are tracked and none can be forgotten (only a closed
 * service without failures can, losslessly), the answer is ALLOW: the
 * breaker fails open rather than stall a service it cannot track.
 * NULL b or service: ALLOW. */
saga_breaker_decision saga_breaker_allow(saga_breaker *b, const char *service,
                                         int64_t now_ms, int64_t *wait_until_ms);

/* Record the outcome of a command sent to service. Returns SAGA_OK,
 * SAGA_EINVAL (NULL argument, unknown outcome) or SAGA_ENOMEM when the
 * service cannot be tracked (table full, as for allow(); nothing changes). */
int saga_breaker_record(saga_breaker *b, const char *service,
                        saga_breaker_outcome outcome, int64_t now_ms);

/* Fill *out with service's state as of now_ms (an open breaker whose
 * cool-down has passed reports half-open) without changing anything.
 * SAGA_ENOTFOUND for a service not tracked (it is closed, no failures). */
int saga_breaker_get(const saga_breaker *b, const char *service, int64_t now_ms,
                     saga_breaker_info *out);

/* Call fn for every tracked service, in no particular order. The service
 * string and info are borrowed for the call. fn must not change b. */
typedef void (*saga_breaker_visit_fn)(const char *service, const saga_breaker_info *info,
                                      void *arg);
void saga_breaker_foreach(const saga_breaker *b, int64_t now_ms, saga_breaker_visit_fn fn,
                          void *arg);

/* "closed", "open", "half_open" (static; for metrics labels and the CLI). */
const char *saga_breaker_state_name(saga_breaker_state s);

#endif
