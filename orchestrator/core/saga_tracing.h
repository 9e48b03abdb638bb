/* saga_tracing.h - the W3C trace context of sagas and their steps.
 *
 * Every saga has a trace context (its "saga span"), stored with it: taken
 * from whoever started the saga (same trace id, a new span id) or a new
 * trace. Every attempt of a step is a span whose parent is the saga span;
 * its id is derived from the saga span and (step, phase, attempt), so
 * nothing more is stored and `sagactl history` can name each attempt's
 * span from the history alone. A command carries
 *
 *   traceparent: 00-<the saga's trace id>-<the attempt's span id>-<flags>
 *
 * and the participant copies it onto its reply (docs/PROTOCOL.md). Pure
 * apart from saga_tracing_start's random span id. */
#ifndef SAGA_TRACING_H
#define SAGA_TRACING_H

#include <stddef.h>

#include "saga/protocol.h"
#include "saga/trace.h"

/* A saga's trace context from the traceparent it was started with
 * (parent: NULL, "" or invalid start a new trace, flags "sampled") into
 * out (SAGA_TRACEPARENT_LEN + 1 bytes). Returns SAGA_OK, or SAGA_EIO when
 * the system has no randomness (out is then ""). */
int saga_tracing_start(const char *parent, char *out, size_t size);

/* The traceparent of attempt `attempt` of step `step` in `phase` of the
 * saga whose context is saga_tp, into out (SAGA_TRACEPARENT_LEN + 1
 * bytes). SAGA_EINVAL (out "") when saga_tp is not a valid traceparent:
 * sagas from before tracing have none, and their commands go without. */
int saga_tracing_step(const char *saga_tp, int step, saga_phase phase, int attempt,
                      char *out, size_t size);

/* As saga_tracing_step for element `element` of a fan-out step: each
 * element's attempt its own span; a negative element gives
 * saga_tracing_step's. */
int saga_tracing_element(const char *saga_tp, int step, saga_phase phase, int attempt,
                         int element, char *out, size_t size);

/* The trace id and span id of traceparent tp in hex (33 and 17 bytes);
 * both "" when tp is not valid. */
void saga_tracing_ids(const char *tp, char trace_id[SAGA_TRACE_ID_HEX_SIZE],
                      char span_id[SAGA_SPAN_ID_HEX_SIZE]);

#endif
