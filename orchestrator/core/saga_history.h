/* saga_history.h - the kinds of event a saga's history records, as an enum
 * with one name table (the names are what saga.saga_event.kind stores and
 * what sagactl, the metrics and operators' queries read: they never
 * change). Pure. */
#ifndef SAGA_HISTORY_H
#define SAGA_HISTORY_H

typedef enum saga_history_kind {
    SAGA_HIST_NONE = -1, /* saga_machine_hold: record nothing */
    SAGA_HIST_SAGA_STARTED = 0,
    SAGA_HIST_STEP_DISPATCHED,
    SAGA_HIST_COMPENSATION_DISPATCHED,
    SAGA_HIST_STEP_HELD,         /* by the engine: the breaker held the command */
    SAGA_HIST_COMPENSATION_HELD, /* the same for a compensation */
    SAGA_HIST_STEP_SUCCEEDED,
    SAGA_HIST_STEP_FAILED,
    SAGA_HIST_ATTEMPT_FAILED,
    SAGA_HIST_ATTEMPT_TIMED_OUT,
    SAGA_HIST_RETRY_SCHEDULED,
    SAGA_HIST_STEP_OUTCOME_UNKNOWN,
    SAGA_HIST_DEADLINE_EXCEEDED,
    SAGA_HIST_COMPENSATION_STARTED,
    SAGA_HIST_COMPENSATION_NOT_NEEDED,
    SAGA_HIST_STEP_COMPENSATED,
    SAGA_HIST_COMPENSATION_FAILED,
    SAGA_HIST_SAGA_COMPLETED,
    SAGA_HIST_SAGA_COMPENSATED,
    SAGA_HIST_SAGA_FAILED,
    SAGA_HIST_OPERATOR_RETRY,
    SAGA_HIST_OPERATOR_COMPENSATE,
    SAGA_HIST_STEP_SKIPPED,
    SAGA_HIST_COMPENSATION_SKIPPED,
    SAGA_HIST_SAGA_RESOLVED,
    SAGA_HIST_SAGA_SET_ASIDE,           /* by the store: a timer that kept failing */
    SAGA_HIST_DEFINITION_UNAVAILABLE,   /* by the store: its definition cannot be read */
    SAGA_HIST_STEP_NOT_RUN,             /* its "when" was false */
    SAGA_HIST_STEP_WAITING,             /* a wait step waits for its signal */
    SAGA_HIST_SIGNAL_RECEIVED,          /* the signal came (ok or a failing verdict) */
    SAGA_HIST_SIGNAL_TIMED_OUT,         /* it did not come in time */
    SAGA_HIST_FANOUT_STARTED,           /* a fan-out step's elements, how many at once */
    SAGA_HIST_CHILD_STARTED,            /* a child step started its child saga */
    SAGA_HIST_CHILD_ENDED,              /* the child ended (how: detail.status) */
    SAGA_HIST_CHILD_COMPENSATION_ASKED, /* undoing the step: the child is asked to undo */
    SAGA_HIST_PARENT_COMPENSATION,      /* in a child: its parent asked it to undo */
    SAGA_HIST__COUNT
} saga_history_kind;

/* The stored name of kind ("step_dispatched"); NULL outside the enum. */
const char *saga_history_kind_name(saga_history_kind kind);

/* The kind named name into *out; 0, or -1 when no kind has that name. */
int saga_history_kind_parse(const char *name, saga_history_kind *out);

#endif
