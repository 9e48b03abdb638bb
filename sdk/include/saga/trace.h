/* libsaga: W3C Trace Context (https://www.w3.org/TR/trace-context/), the
 * `traceparent` header that commands and replies carry (docs/PROTOCOL.md).
 *
 *   traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01
 *                ^^ ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^ ^^^^^^^^^^^^^^^^ ^^
 *           version trace id (16 bytes)     parent (span) id   flags
 *
 * Thread safety: every function here is thread-safe (no shared state; the
 * random ids come from the kernel's getrandom or /dev/urandom). None
 * allocates. */
#ifndef SAGA_TRACE_H
#define SAGA_TRACE_H

#include <stddef.h>
#include <stdint.h>

#include "saga/error.h"
#include "saga/protocol.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Length of a version-00 traceparent, without the NUL. */
#define SAGA_TRACEPARENT_LEN 55
/* Sizes of the hex forms including the NUL. */
#define SAGA_TRACE_ID_HEX_SIZE 33
#define SAGA_SPAN_ID_HEX_SIZE  17
/* trace-flags bit 0: the caller may have recorded this trace. */
#define SAGA_TRACE_FLAG_SAMPLED 0x01

/* One position in a trace: the trace, the span that is the parent of
 * whatever is done next, and the flags. A plain value: copy it freely. */
typedef struct saga_trace_context {
    uint8_t trace_id[16]; /* never all zero when valid */
    uint8_t span_id[8];   /* the header's parent-id; never all zero when valid */
    uint8_t flags;
} saga_trace_context;

/* Parse a traceparent header of len bytes (not necessarily NUL-terminated)
 * into *out. Accepts version 00 exactly as the specification draws it
 * (55 characters, lowercase hex, ids not all zero) and, as the
 * specification asks, a later version's value when its first 55
 * characters have that form and are followed by the end or a '-'.
 * Version ff, uppercase hex, wrong lengths or separators and all-zero ids
 * are SAGA_EPROTO; NULL text or out is SAGA_EINVAL. On failure *out is
 * zeroed. */
SAGA_API int saga_traceparent_parse(const char *text, size_t len,
                                    saga_trace_context *out);

/* Write ctx as a version-00 traceparent plus NUL into buf, which must hold
 * SAGA_TRACEPARENT_LEN + 1 bytes. SAGA_EINVAL for NULL arguments, a small
 * buffer or all-zero ids (buf is then "" when size > 0). */
SAGA_API int saga_traceparent_format(const saga_trace_context *ctx, char *buf,
                                     size_t size);

/* Start a new trace: random trace id and span id (never all zero), flags
 * as given. SAGA_EIO when the system has no randomness to give (*out is
 * then zeroed), SAGA_EINVAL for NULL. */
SAGA_API int saga_trace_new(saga_trace_context *out, uint8_t flags);

/* A child of parent: the same trace id and flags, a new random span id.
 * out may be parent. SAGA_EINVAL for NULL or an invalid parent, SAGA_EIO as
 * for saga_trace_new (*out is then left unchanged). */
SAGA_API int saga_trace_child(const saga_trace_context *parent, saga_trace_context *out);

/* The ids in lowercase hex, for logs: buf must hold SAGA_TRACE_ID_HEX_SIZE
 * (respectively SAGA_SPAN_ID_HEX_SIZE) bytes. Returns buf. */
SAGA_API char *saga_trace_id_hex(const saga_trace_context *ctx,
                                 char buf[SAGA_TRACE_ID_HEX_SIZE]);
SAGA_API char *saga_span_id_hex(const saga_trace_context *ctx,
                                char buf[SAGA_SPAN_ID_HEX_SIZE]);

/* The trace context a command arrived with (its `traceparent` header,
 * cmd->traceparent), e.g. to log the trace id or to parent the handler's
 * own spans. SAGA_OK; SAGA_ENOTFOUND when the command carried none;
 * SAGA_EPROTO when it does not parse; SAGA_EINVAL for NULL. *out is
 * zeroed on failure. */
SAGA_API int saga_command_trace(const saga_command *cmd, saga_trace_context *out);

#ifdef __cplusplus
}
#endif

#endif
