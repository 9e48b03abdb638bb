/* saga_machine_internal.h - the machine's private context and the
 * functions its files call each other with (not for callers of the
 * machine: saga_machine.h is its interface). Calls go one way: the entry
 * (saga_machine.c) and the operator's repairs call the steps, which call
 * the actions; the state file is below all of them. Pure, no globals. */
#ifndef SAGA_MACHINE_INTERNAL_H
#define SAGA_MACHINE_INTERNAL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "saga_machine.h"
#include "saga_template.h"

/* ---- the machine ---- */

typedef struct saga__machine_ctx {
    saga_state *s;
    const saga_event *ev;
    saga_actions *out;
    int oom;
} saga__machine_ctx;

/* ---- saga_machine_actions.c ---- */

saga_action *saga__machine_push(saga__machine_ctx *c, saga_action_kind kind);

void saga__machine_history(saga__machine_ctx *c, saga_history_kind what, int step,
                           int attempt, json_t *detail);

json_t *saga__machine_error_obj(const char *code, const char *message);

void saga__machine_set_error(saga_step_state *st, json_t *err);

void saga__machine_finish(saga__machine_ctx *c, saga_status status,
                          saga_history_kind what);

/* ---- saga_machine_steps.c ---- */

int saga__machine_cursor_consistent(const saga_state *s);

int saga__machine_past_return(const saga_state *s);

void saga__machine_stage_of(const saga_state *s, int *first, int *last);

void saga__machine_update_wake(saga_state *s);

void saga__machine_dispatch(saga__machine_ctx *c, int i);

void saga__machine_advance(saga__machine_ctx *c, int i);

void saga__machine_fail_stage(saga__machine_ctx *c, int step, const char *why);

void saga__machine_stage_done_or_wait(saga__machine_ctx *c);

void saga__machine_next_compensation(saga__machine_ctx *c, int from);

void saga__machine_transient(saga__machine_ctx *c, int i, json_t *err,
                             int64_t retry_after, saga_history_kind what);

/* ---- saga_machine_operator.c ---- */

int saga__machine_on_operator(saga__machine_ctx *c, const char **reason);

/* ---- saga_machine.c ---- */

/* ---- saga_machine_signal.c ---- */

/* SAGA_EV_SIGNAL: the wait step of the running stage that waits for it
 * ends (its payload the output; a failing verdict fails it). */
int saga__machine_on_signal(saga__machine_ctx *c, const char **reason);

/* Wait step i's time is up: its default output, or it fails. */
void saga__machine_wait_timed_out(saga__machine_ctx *c, int i);

#endif
