/* saga_gate.h - what stands between the machine's "send this command" and
 * the outbox: a circuit breaker and a bulkhead per participant service.
 *
 * The engine asks saga_gate_admit() for every command a transition wants
 * to send. SEND: it goes into the outbox as usual. HOLD: the engine turns
 * it back into a wait with saga_machine_hold() (the step waits until the
 * returned time, then asks again; no attempt is used, nothing times out).
 *
 *   breaker   closed --N transient failures--> open (cool-down) --> half-open:
 *             one probe goes; its answer closes or re-opens (saga_breaker.h)
 *   bulkhead  at most `limit` commands per service admitted and not yet
 *             settled; a slot is freed by the reply, by a timeout, or when
 *             the command's deadline (+ grace) passes without either here
 *             (its reply went to another sagad, or was lost)
 *
 * Transactions: admissions and settlements happen while the engine's
 * PostgreSQL transaction is open. saga_gate_commit() makes them count;
 * saga_gate_abort() undoes the admissions (slots back, a probe cancelled)
 * and forgets the settlements (the replies are consumed again).
 *
 * Scope: one gate per sagad process; with several instances each keeps
 * its own breakers and slots (the cap is per instance). Commands re-sent
 * from the outbox after a restart were admitted before and go out without
 * asking again.
 *
 * Pure: no I/O, no clock (now_ms comes in), bounded memory. Thread safety:
 * none; the engine loop owns it. */
#ifndef SAGA_GATE_H
#define SAGA_GATE_H

#include <stdint.h>

#include "saga/error.h"
#include "saga_breaker.h"

typedef struct saga_gate_config {
    int breaker_off;             /* nonzero: no circuit breaker */
    saga_breaker_config breaker; /* thresholds; zeros are defaults */
    int max_in_flight;           /* default cap per service; 0 = unlimited */
    /* Per-service caps "svc=N,other=M" (N >= 0; 0 = unlimited); NULL: none. */
    const char *service_limits;
    int64_t recheck_ms;    /* a bulkhead (or half-open) hold lasts this; <= 0: 1000 */
    int64_t slot_grace_ms; /* a slot outlives its deadline by this; <= 0: 2000 */
} saga_gate_config;

typedef enum saga_gate_verdict {
    SAGA_GATE_SEND = 0,
    SAGA_GATE_HOLD_BREAKER,  /* the service's breaker is open (or probing) */
    SAGA_GATE_HOLD_BULKHEAD, /* the service has `limit` commands out */
} saga_gate_verdict;

typedef enum saga_gate_outcome {
    SAGA_GATE_ANSWERED = 0, /* ok or a definite failed: the service works */
    SAGA_GATE_RETRY,        /* a retry reply: transient trouble */
    SAGA_GATE_TIMEOUT,      /* no reply in time */
    /* The command never reached the service (the broker refused it as too
     * large): its slot is freed and the breaker learns nothing, so one
     * oversized input cannot hold every other saga of a healthy service. */
    SAGA_GATE_UNSENT,
} saga_gate_outcome;

/* Per service, for metrics and `sagactl stats`. */
typedef struct saga_gate_info {
    saga_breaker_info breaker; /* state CLOSED with zeros when never failed */
    int in_flight;             /* admitted, not settled */
    int limit;                 /* 0 = unlimited */
    uint64_t held_breaker;     /* commands held by the breaker, in total */
    uint64_t held_bulkhead;    /* commands held by the bulkhead, in total */
    /* Holds of an open transaction are included while it is open; abort
     * takes them back, so a batch rolled back and applied again is not
     * counted twice (sagad publishes these between transactions). */
} saga_gate_info;

typedef struct saga_gate saga_gate;

/* Create a gate (cfg NULL: all defaults). *out is NULL on failure, owned by
 * the caller on success: saga_gate_free(). SAGA_EINVAL with err saying
 * what is wrong in service_limits or a negative cap; SAGA_ENOMEM. */
int saga_gate_new(const saga_gate_config *cfg, saga_gate **out, saga_error *err);

/* NULL is a no-op. */
void saga_gate_free(saga_gate *g);

/* May the command command_id (stable per saga, step and phase) to service
 * go out now? random in [0,1) spreads the hold times. On HOLD *hold_until
 * is when to ask again. On SEND a slot is taken at once (later admissions
 * in the same transaction see it) and kept until the command is settled or
 * deadline_ms + grace passes (0: now + 60 s + grace). service and
 * command_id are copied. NULL arguments: SEND. */
saga_gate_verdict saga_gate_admit(saga_gate *g, const char *service,
                                  const char *command_id, int64_t deadline_ms,
                                  int64_t now_ms, double random, int64_t *hold_until);

/* The engine held saga_id's command to service for the bulkhead until
 * until (takes effect on commit). When a slot of that service frees,
 * saga_gate_take_wakeable() hands the saga back to be woken early instead
 * of at until, first held first. Bounded: the oldest beyond 1024 per
 * service are forgotten (they wake at their own time). */
int saga_gate_note_held(saga_gate *g, const char *service, const char *saga_id,
                        int64_t until);

/* Sagas held by the bulkhead of services that have free slots now, at most
 * as many per service as it has free slots, at most max in all: their ids
 * (36 characters + NUL) and the until they were held to (so the caller can
 * wake only sagas still waiting for that hold). Returns how many. */
int saga_gate_take_wakeable(saga_gate *g, char (*ids)[37], int64_t *untils, int max);

/* The command was answered or timed out (takes effect on commit). Returns
 * SAGA_OK, SAGA_EINVAL, SAGA_ENOMEM. */
int saga_gate_settle(saga_gate *g, const char *service, const char *command_id,
                     saga_gate_outcome outcome, int64_t now_ms);

/* The transaction committed (settlements applied) or rolled back
 * (admissions undone, settlements dropped). */
void saga_gate_commit(saga_gate *g, int64_t now_ms);
void saga_gate_abort(saga_gate *g, int64_t now_ms);

/* Free the slots whose time ran out. Returns how many. */
int saga_gate_expire(saga_gate *g, int64_t now_ms);

/* Call fn for every service the gate has seen (bounded: the first 256),
 * in the order first seen. Strings and info are borrowed for the call. */
typedef void (*saga_gate_visit_fn)(const char *service, const saga_gate_info *info,
                                   void *arg);
void saga_gate_foreach(const saga_gate *g, int64_t now_ms, saga_gate_visit_fn fn,
                       void *arg);

#endif
