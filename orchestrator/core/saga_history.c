/* saga_history.c - the one name table of history event kinds (see
 * saga_history.h). */
#include <string.h>

#include "saga_history.h"

/* Indexed by the enum; a missing entry fails the build (the size is the
 * enum's count) and test_machine compares every name with its literal. */
static const char *const names[SAGA_HIST__COUNT] = {
    [SAGA_HIST_SAGA_STARTED] = "saga_started",
    [SAGA_HIST_STEP_DISPATCHED] = "step_dispatched",
    [SAGA_HIST_COMPENSATION_DISPATCHED] = "compensation_dispatched",
    [SAGA_HIST_STEP_HELD] = "step_held",
    [SAGA_HIST_COMPENSATION_HELD] = "compensation_held",
    [SAGA_HIST_STEP_SUCCEEDED] = "step_succeeded",
    [SAGA_HIST_STEP_FAILED] = "step_failed",
    [SAGA_HIST_ATTEMPT_FAILED] = "attempt_failed",
    [SAGA_HIST_ATTEMPT_TIMED_OUT] = "attempt_timed_out",
    [SAGA_HIST_RETRY_SCHEDULED] = "retry_scheduled",
    [SAGA_HIST_STEP_OUTCOME_UNKNOWN] = "step_outcome_unknown",
    [SAGA_HIST_DEADLINE_EXCEEDED] = "deadline_exceeded",
    [SAGA_HIST_COMPENSATION_STARTED] = "compensation_started",
    [SAGA_HIST_COMPENSATION_NOT_NEEDED] = "compensation_not_needed",
    [SAGA_HIST_STEP_COMPENSATED] = "step_compensated",
    [SAGA_HIST_COMPENSATION_FAILED] = "compensation_failed",
    [SAGA_HIST_SAGA_COMPLETED] = "saga_completed",
    [SAGA_HIST_SAGA_COMPENSATED] = "saga_compensated",
    [SAGA_HIST_SAGA_FAILED] = "saga_failed",
    [SAGA_HIST_OPERATOR_RETRY] = "operator_retry",
    [SAGA_HIST_OPERATOR_COMPENSATE] = "operator_compensate",
    [SAGA_HIST_STEP_SKIPPED] = "step_skipped",
    [SAGA_HIST_COMPENSATION_SKIPPED] = "compensation_skipped",
    [SAGA_HIST_SAGA_RESOLVED] = "saga_resolved",
    [SAGA_HIST_SAGA_SET_ASIDE] = "saga_set_aside",
    [SAGA_HIST_DEFINITION_UNAVAILABLE] = "definition_unavailable",
    [SAGA_HIST_STEP_NOT_RUN] = "step_not_run",
    [SAGA_HIST_STEP_WAITING] = "step_waiting",
    [SAGA_HIST_SIGNAL_RECEIVED] = "signal_received",
    [SAGA_HIST_SIGNAL_TIMED_OUT] = "signal_timed_out",
    [SAGA_HIST_FANOUT_STARTED] = "fanout_started",
    [SAGA_HIST_CHILD_STARTED] = "child_started",
    [SAGA_HIST_CHILD_ENDED] = "child_ended",
    [SAGA_HIST_CHILD_COMPENSATION_ASKED] = "child_compensation_asked",
    [SAGA_HIST_PARENT_COMPENSATION] = "parent_compensation",
};

const char *saga_history_kind_name(saga_history_kind kind)
{
    return (int)kind >= 0 && kind < SAGA_HIST__COUNT ? names[kind] : NULL;
}

int saga_history_kind_parse(const char *name, saga_history_kind *out)
{
    for (int i = 0; name != NULL && i < SAGA_HIST__COUNT; i++)
        if (names[i] != NULL && strcmp(names[i], name) == 0) {
            *out = (saga_history_kind)i;
            return 0;
        }
    return -1;
}
