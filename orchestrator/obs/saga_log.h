/* sagad's and sagactl's log lines (stderr). Library code never logs; the
 * programs do, through this.
 *
 * Two formats, one line per event:
 *   human  2026-11-24T19:31:27.123Z INFO  sagad running: ... saga_id=... attempt=2
 *   JSON   {"time":"2026-11-24T19:31:27.123Z","level":"info","msg":"sagad running: ...",
 *           "saga_id":"...","step":"reserve_credit","attempt":2,"trace_id":"...",
 *           "span_id":"..."}
 * The time is UTC, RFC 3339 with milliseconds. Optional fields appear only
 * when set.
 *
 * Thread safety: saga_log and saga_log_fields may be called from any
 * thread (librdkafka's log callback runs on its threads); each line is
 * written with one stdio call, so lines never interleave. The setters are
 * meant for start-up, before other threads log. */
#ifndef SAGA_LOG_H
#define SAGA_LOG_H

#include <stddef.h>
#include <stdio.h>
#include <time.h>

typedef enum saga_log_level {
    SAGA_LOG_DEBUG = 0,
    SAGA_LOG_INFO,
    SAGA_LOG_WARN,
    SAGA_LOG_ERROR,
} saga_log_level;

typedef enum saga_log_format {
    SAGA_LOG_FORMAT_AUTO = 0, /* human when the output is a terminal, else JSON */
    SAGA_LOG_FORMAT_HUMAN,
    SAGA_LOG_FORMAT_JSON,
} saga_log_format;

/* Optional context of a line. Unset members (NULL, attempt 0) are left out. */
typedef struct saga_log_ctx {
    const char *saga_id;
    const char *step; /* the step's name */
    int attempt;      /* 1-based; 0 = none */
    const char *trace_id;
    const char *span_id;
} saga_log_ctx;

void saga_log_set_level(saga_log_level level);
/* Would a line at level be written? (To skip building costly context.) */
int saga_log_enabled(saga_log_level level);
/* Parse "debug", "info", "warn", "error"; -1 if unknown. */
int saga_log_parse_level(const char *text);

/* The format of the lines that follow (the default is AUTO). */
void saga_log_set_format(saga_log_format format);
/* Parse "auto", "human", "json"; -1 if unknown. */
int saga_log_parse_format(const char *text);
/* The format lines are written in now: AUTO resolved against the output. */
saga_log_format saga_log_effective_format(void);

/* Where lines go: stderr by default (NULL restores it). The stream is
 * borrowed: keep it open while it is the output. */
void saga_log_set_output(FILE *out);

void saga_log(saga_log_level level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* As saga_log, with the fields of ctx (NULL: none). */
void saga_log_fields(saga_log_level level, const saga_log_ctx *ctx, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Pure: format one line, newline included, for format HUMAN or JSON (AUTO
 * is taken as HUMAN) at time when (UTC), into buf of size bytes,
 * NUL-terminated and truncated to fit like snprintf. Returns the length
 * the whole line needs, without the NUL. msg and ctx strings may hold any
 * bytes: JSON escapes quotes, backslashes and control characters and
 * replaces invalid UTF-8 with U+FFFD, so every line is valid JSON. */
size_t saga_log_format_line(char *buf, size_t size, saga_log_format format,
                            saga_log_level level, const struct timespec *when,
                            const saga_log_ctx *ctx, const char *msg);

#endif
