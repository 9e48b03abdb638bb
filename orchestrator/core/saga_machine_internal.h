/* saga_machine_internal.h - the machine's private context and the
 * functions its files call each other with (not for callers of the
 * machine: saga_machine.h is its interface). Calls go one way: the entry
 * (saga_machine.c), the operator's repairs, signals and fan-out events call
 * the steps (how a saga moves), which call the units (one step or element,
 * without moving the saga), which call the actions; the state file is
 * below all of them. Pure, no globals. */
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

/* A child saga ended (completed, compensated or resolved): its parent is
 * told, with the child's result. No-op for a saga without a parent. */
void saga__machine_notify_parent(saga__machine_ctx *c);

/* ---- saga_machine_units.c ---- */

int saga__machine_cursor_consistent(const saga_state *s);

int saga__machine_past_return(const saga_state *s);

void saga__machine_stage_of(const saga_state *s, int *first, int *last);

void saga__machine_update_wake(saga_state *s);

/* detail (taken) with "element": e added when e >= 0. */
json_t *saga__machine_el(json_t *detail, int e);

/* A transient failure of unit u (step i itself, or its element e >= 0):
 * its error recorded (err taken) and, while its policy allows, a retry
 * scheduled: 1. 0: the budget is spent, the caller gives up on it. */
int saga__machine_retry_later(saga__machine_ctx *c, int i, int e, saga_step_state *u,
                              json_t *err, int64_t retry_after, saga_history_kind what);

/* An element whose effect exists or may exist (to be undone). */
int saga__fanout_to_undo(saga_step_status st);

/* The unit a SEND action is for: the step, or its element (NULL: none). */
saga_step_state *saga__fanout_unit(saga_state *s, int step, int element);

/* The step's due_at and awaiting from its elements'. */
void saga__fanout_sync(saga_state *s, int i);

/* A closed or stuck saga keeps no timer of an element. */
void saga__fanout_clear_timers(saga_state *s, int i);

/* The length of fan-out step i's list now; -1 with msg saying why the
 * step cannot run (not a list, nothing, too long), -2 out of memory. */
int saga__fanout_list_size(const saga_state *s, int i, char *msg, size_t size);

/* The template context of element e of fan-out step i (new reference). */
json_t *saga__fanout_context(const saga_state *s, int i, int e);

/* Element e's compensation failed for good: the saga is stuck. */
void saga__fanout_compensation_failed(saga__machine_ctx *c, int i, int e,
                                      const char *why);

/* The stage of fan-out step i is given up: its elements in flight may
 * have acted (unknown), those never sent did not (pending). No-op for a
 * step that does not fan out. */
void saga__fanout_abandon(saga__machine_ctx *c, int i);

/* An operator's retry of a stuck fan-out step i: what failed for good is
 * opened again (before the retry re-sends it). */
void saga__fanout_reopen(saga__machine_ctx *c, int i);

/* An operator's skip of fan-out step i: forward, each element not
 * succeeded is skipped with output (borrowed, may be NULL), and the list
 * of the elements' outputs is returned (new; NULL for a step without
 * elements); backward, each element still to undo counts as undone. */
json_t *saga__fanout_skip(saga__machine_ctx *c, int i, int forward, const json_t *output);

/* ---- saga_machine_steps.c ---- */

void saga__machine_dispatch(saga__machine_ctx *c, int i);

void saga__machine_advance(saga__machine_ctx *c, int i);

void saga__machine_fail_stage(saga__machine_ctx *c, int step, const char *why);

void saga__machine_stage_done_or_wait(saga__machine_ctx *c);

void saga__machine_next_compensation(saga__machine_ctx *c, int from);

void saga__machine_transient(saga__machine_ctx *c, int i, json_t *err,
                             int64_t retry_after, saga_history_kind what);

/* Step i cannot be sent (its input or its list does not resolve). */
void saga__machine_cannot_run(saga__machine_ctx *c, int i, const char *code,
                              const char *message);

/* Fan-out step i's turn came (it is DISPATCHED): its list is read, its
 * elements made and the first `concurrency` of them sent. */
void saga__fanout_begin(saga__machine_ctx *c, int i);

/* Send element e of step i in its current phase, as its next attempt. */
void saga__fanout_dispatch(saga__machine_ctx *c, int i, int e);

/* Send the next elements while fewer than `concurrency` are in flight. */
void saga__fanout_fill(saga__machine_ctx *c, int i);

/* Element e's action failed for good (err taken): the step gives up. */
void saga__fanout_element_failed(saga__machine_ctx *c, int i, int e, json_t *err);

/* An element succeeded / was undone: the next goes, or the step is done. */
void saga__fanout_forward(saga__machine_ctx *c, int i);
void saga__fanout_backward(saga__machine_ctx *c, int i);

/* A transient failure of element e (a retry reply or a timeout). */
void saga__fanout_transient(saga__machine_ctx *c, int i, int e, json_t *err,
                            int64_t retry_after, saga_history_kind what);

/* Compensating reached fan-out step i: 1 when some of its elements are
 * to be undone (under way now), 0 to go on before it. */
int saga__fanout_compensate(saga__machine_ctx *c, int i);

/* ---- saga_machine_operator.c ---- */

int saga__machine_on_operator(saga__machine_ctx *c, const char **reason);

/* ---- saga_machine_signal.c ---- */

/* SAGA_EV_SIGNAL: the wait step of the running stage that waits for it
 * ends (its payload the output; a failing verdict fails it). */
int saga__machine_on_signal(saga__machine_ctx *c, const char **reason);

/* A step waiting for something outside (a signal, a child saga) ended:
 * it succeeded with output (taken), or failed definitely with err
 * (taken; nothing of it to undo). */
void saga__machine_wait_succeeded(saga__machine_ctx *c, int i, json_t *output);
void saga__machine_wait_failed(saga__machine_ctx *c, int i, json_t *err);

/* Wait step i's time is up: its default output, or it fails. */
void saga__machine_wait_timed_out(saga__machine_ctx *c, int i);

/* ---- saga_machine_child.c ---- */

/* SAGA_EV_CHILD_ENDED: the child of step ev->step ended. */
int saga__machine_on_child_ended(saga__machine_ctx *c, const char **reason);

/* SAGA_EV_PARENT_COMPENSATE: in a child, its parent undoes it. */
int saga__machine_on_parent_compensate(saga__machine_ctx *c, const char **reason);

/* ---- saga_machine_fanout.c ---- */

/* SAGA_EV_REPLY for an element of fan-out step r->step. */
int saga__fanout_on_reply(saga__machine_ctx *c, const char **reason);

/* The due timers of fan-out step i's elements fire. */
void saga__fanout_wake(saga__machine_ctx *c, int i);

/* An operator's retry of fan-out step i: every element in flight is sent
 * again with a fresh budget, and the free places filled. */
void saga__fanout_retry(saga__machine_ctx *c, int i);

#endif
