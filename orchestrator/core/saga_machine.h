/* The saga state machine: pure. One call takes a saga's state and one
 * event and yields the new state plus a list of actions (send a command,
 * record a history event). No I/O, no clock, no randomness of its own: the
 * time and a random number for jitter come in with the event.
 *
 * Persisting the new state and the actions atomically is the shell's job
 * (store/saga_batch.c, the one writer); sending the commands only after
 * that commit is the engine's (engine/saga_engine_send.c). */
#ifndef SAGA_MACHINE_H
#define SAGA_MACHINE_H

#include <stdint.h>

#include <jansson.h>

#include "saga/protocol.h"
#include "saga/trace.h"
#include "saga_history.h"
#include "saga_definition.h"

typedef enum saga_status {
    SAGA_ST_NEW = 0,      /* created in memory, not started (never stored) */
    SAGA_ST_RUNNING,      /* going forward */
    SAGA_ST_COMPENSATING, /* undoing, in reverse order */
    SAGA_ST_COMPLETED,    /* every step succeeded */
    SAGA_ST_COMPENSATED,  /* every step that may have had an effect was undone */
    SAGA_ST_FAILED,       /* stuck: an operator must act */
    SAGA_ST_RESOLVED,     /* was failed; an operator closed it by hand */
} saga_status;

typedef enum saga_step_status {
    SAGA_STEP_PENDING = 0,
    SAGA_STEP_DISPATCHED, /* action sent (or waiting to be re-sent) */
    SAGA_STEP_SUCCEEDED,
    SAGA_STEP_FAILED,       /* definite business failure: nothing to undo */
    SAGA_STEP_UNKNOWN,      /* retries exhausted: the effect may or may not exist */
    SAGA_STEP_COMPENSATING, /* compensation sent (or waiting to be re-sent) */
    SAGA_STEP_COMPENSATED,
    SAGA_STEP_COMPENSATION_FAILED, /* compensation gave up: saga is stuck */
    SAGA_STEP_SKIPPED,
    SAGA_STEP_NOT_RUN, /* its "when" was false: never sent, nothing to undo */
} saga_step_status;

#define SAGA_STATUS_COUNT      7
#define SAGA_STEP_STATUS_COUNT 10

const char *saga_status_name(saga_status s);
int saga_status_parse(const char *text, saga_status *out);
const char *saga_step_status_name(saga_step_status s);
int saga_step_status_parse(const char *text, saga_step_status *out);
int saga_status_is_final(saga_status s);

typedef struct saga_step_state {
    saga_step_status status;
    int attempts;       /* attempts made in the current phase */
    int attempt_base;   /* attempts before the current retry budget (an operator's
                           retry starts a fresh budget; attempt numbers go on) */
    int awaiting;       /* 1: a command is out, due_at is its timeout;
                           0: due_at is when to send (next attempt) */
    int64_t due_at;     /* ms since epoch; 0 = nothing scheduled */
    int64_t started_at; /* first dispatch of the current phase */
    int64_t finished_at;
    json_t *output; /* owned; NULL until succeeded */
    json_t *error;  /* owned; the last error ({code, message}) of the current
                       phase (action or compensation); NULL once the step
                       succeeded, was compensated or skipped, and when its
                       compensation starts (earlier ones stay in the history) */
    int dirty;      /* changed by the last apply (for the store) */
    /* A fan-out step ("for_each") that began: one state per element of its
     * list (owned), each run as a step of its own (status, attempts,
     * timers, output, error; their own elements unused). The step's
     * status is the fan-out's; its due_at the earliest of its elements',
     * awaiting whether any is; its output, once every element succeeded,
     * the list of their outputs. NULL otherwise (also for an empty list). */
    int nelements;
    struct saga_step_state *elements;
} saga_step_state;

typedef struct saga_state {
    char id[SAGA_ID_LEN + 1];
    const saga_definition *def; /* borrowed; the version the saga started with */
    saga_status status;
    int cursor;    /* the step being run or compensated */
    json_t *input; /* owned */
    int64_t created_at, updated_at;
    /* When the saga last made progress: its status or a step's status
     * changed. A retry, a timeout with attempts left, a wake that re-sends
     * or a hold (saga_machine_hold) move updated_at only, so a saga that
     * retries or waits for ever shows how long it has not moved. */
    int64_t progressed_at;
    int64_t deadline_at; /* 0 = none */
    int64_t wake_at;     /* earliest timer; 0 = none (computed) */
    int nsteps;
    saga_step_state *steps; /* owned */
    /* The saga's own span (saga_tracing.h); "" when it has none (sagas
     * from before tracing). Not used by the machine. */
    char traceparent[SAGA_TRACEPARENT_LEN + 1];
    /* A child saga: the saga and step that started it ("" and -1: none).
     * When it ends the machine tells its parent (SAGA_ACT_NOTIFY_PARENT). */
    char parent_id[SAGA_ID_LEN + 1];
    int parent_step;
} saga_state;

/* Allocate a NEW state for def (borrowed, must outlive it) with input
 * (reference taken). Returns NULL on allocation failure. */
saga_state *saga_state_new(const saga_definition *def, const char *id, json_t *input);
void saga_state_free(saga_state *s);

typedef enum saga_event_kind {
    SAGA_EV_START = 0, /* begin the saga */
    SAGA_EV_REPLY,     /* a participant replied */
    SAGA_EV_WAKE,      /* a timer is due: a timeout, a retry, the deadline */
    /* Operator commands (sagactl); each needs actor and reason. */
    SAGA_EV_OP_RETRY,      /* re-send the outstanding step or compensation now,
                              with a fresh attempt budget; un-sticks a failed saga */
    SAGA_EV_OP_COMPENSATE, /* abort a running saga and compensate it */
    SAGA_EV_OP_SKIP,       /* mark the outstanding step (or compensation) done by hand */
    SAGA_EV_OP_RESOLVE,    /* close a failed saga as resolved by hand */
    SAGA_EV_SIGNAL,        /* a signal for a wait step: signal, signal_id, output
                              (its payload), signal_failed and reason */
    SAGA_EV_CHILD_ENDED,   /* the child of step `step` ended: child_end, output
                              (its result; borrowed) */
    SAGA_EV_PARENT_COMPENSATE, /* to a child saga: its parent is undoing the step
                                  that started it, so undo it too */
    SAGA_EV_KIND_COUNT
} saga_event_kind;

typedef struct saga_event {
    saga_event_kind kind;
    int64_t now;              /* ms since epoch */
    double random;            /* in [0,1): jitter */
    const saga_reply *reply;  /* SAGA_EV_REPLY: borrowed */
    const char *actor;        /* operator events: who (recorded in the history) */
    const char *on_behalf_of; /* operator events: for whom, free text (NULL: none) */
    const char *reason;       /* operator events: why (required) */
    int step;              /* SAGA_EV_OP_SKIP: the step, which must be the current one */
    json_t *output;        /* SAGA_EV_OP_SKIP: the step's output; SAGA_EV_SIGNAL: the
                              payload (borrowed; NULL = {}) */
    const char *signal;    /* SAGA_EV_SIGNAL: its name */
    const char *signal_id; /* SAGA_EV_SIGNAL: its id (for the history) */
    int signal_failed;     /* SAGA_EV_SIGNAL: a verdict that fails the step (reason) */
    int child_end;         /* SAGA_EV_CHILD_ENDED: a saga_child_end */
} saga_event;

typedef enum saga_action_kind {
    SAGA_ACT_SEND = 0, /* send a command; persist it before it leaves */
    SAGA_ACT_HISTORY,  /* append an event to the saga's history */
    /* Child sagas (saga_child.h), each written in the transaction of the
     * transition like a command: */
    SAGA_ACT_START_CHILD,      /* start step's child (its id: saga_child_id) with
                                  payload as its input */
    SAGA_ACT_COMPENSATE_CHILD, /* undo step's child */
    SAGA_ACT_NOTIFY_PARENT,    /* this child ended: payload {"status", "result"} */
} saga_action_kind;

typedef struct saga_action {
    saga_action_kind kind;
    int step;
    int element; /* SEND: the fan-out element the command is for; -1: none */
    saga_phase phase;
    int attempt;
    int64_t deadline;       /* SEND: when this attempt times out */
    json_t *payload;        /* SEND: the command payload (owned) */
    saga_history_kind what; /* HISTORY: the event's kind */
    json_t *detail;         /* HISTORY: details (owned, may be NULL) */
} saga_action;

typedef struct saga_actions {
    int n, cap;
    saga_action *items;
} saga_actions;

void saga_actions_clear(saga_actions *a);

typedef enum saga_apply_result {
    SAGA_APPLIED = 0, /* state changed; actions to persist */
    SAGA_IGNORED,     /* a duplicate or stale event: nothing to do (count it) */
    SAGA_REJECTED,    /* the event makes no sense in this state */
} saga_apply_result;

/* Apply ev to s. On SAGA_APPLIED s is updated (updated_at = ev->now, and
 * progressed_at = ev->now when a status changed) and actions appended to out
 * (which the caller clears). On IGNORED or REJECTED s is unchanged and
 * *reason (static text) says why. Returns SAGA_ENOMEM on allocation
 * failure, leaving s in an unspecified state (discard it). */
int saga_machine_apply(saga_state *s, const saga_event *ev, saga_actions *out,
                       const char **reason);

/* When s's timer should fire, in ms since the epoch (0: never): the
 * earliest due time of the steps under way, or the deadline. apply keeps
 * s->wake_at equal to it; the store may keep an earlier time (see
 * saga_batch_sql.c), and a timer that fired early, finding nothing due,
 * is set to this again. Pure. */
int64_t saga_machine_next_wake(const saga_state *s);

/* Whether s has a unit waiting to be sent again at its due time (held by
 * the gate, or backing off before a retry) rather than waiting for an
 * answer: such a timer is stored exactly, because the gate may wake the
 * saga early by that very time. Pure. */
int saga_machine_wake_is_exact(const saga_state *s);

/* The engine may not send a command the machine asked for (a participant
 * service's circuit breaker is open, or its bulkhead is full): turn the
 * SEND action acts->items[index] that the last apply on s produced back
 * into a wait. The step keeps its status and attempt count as if the
 * attempt had not been made, and is due again at until (the next WAKE
 * dispatches it: a held command never times out and never uses up an
 * attempt). The action and its "*_dispatched" history line are removed;
 * with why (e.g. SAGA_HIST_STEP_HELD) the history line is replaced
 * by one of that kind whose detail gets detail's fields (stolen, may be
 * NULL) and "until"; with SAGA_HIST_NONE nothing is recorded (holds that repeat
 * often would flood the history). Pure. Returns SAGA_OK, SAGA_EINVAL
 * (not a SEND of the step's current attempt), SAGA_ENOMEM. */
int saga_machine_hold(saga_state *s, saga_actions *acts, int index, int64_t until,
                      saga_history_kind why, json_t *detail);

/* The backoff before attempt+1 after `attempt` failed attempts. */
int64_t saga_backoff_ms(const saga_retry_policy *p, int attempt, double random);

/* The template context of s: {"input":..., "steps":{...}, "saga":{...}}. */
json_t *saga_state_context(const saga_state *s);

#endif
