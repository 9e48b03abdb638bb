/* saga_participant_log.c - the participant's problems: kept as the last
 * warning and passed to the program's logger, at most LOG_BURST lines per
 * window, the rest counted. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>

#include "saga_participant_private.h"

/* A window that ended with lines left out says how many, once. */
void saga__participant_log_roll(saga_participant *p, int64_t now)
{
    if (now - p->log_window < LOG_WINDOW_MS)
        return;
    if (p->log_left_out > 0 && p->log_fn != NULL) {
        char line[200];
        snprintf(line, sizeof line,
                 "%llu more problem(s) in the last %d s not logged (rate limit; see "
                 "saga_participant_get_stats)",
                 (unsigned long long)p->log_left_out, LOG_WINDOW_MS / 1000);
        p->log_fn(SAGA_PARTICIPANT_LOG_WARN, line, p->log_arg);
    }
    p->log_window = now;
    p->log_lines = 0;
    p->log_left_out = 0;
}

/* Keep the problem as the last warning and pass it to the logger, at most
 * LOG_BURST lines per window. */
static void say(saga_participant *p, saga_participant_log_level level, const char *fmt,
                va_list ap)
{
    vsnprintf(p->warning, sizeof p->warning, fmt, ap);
    if (p->log_fn == NULL)
        return;
    saga__participant_log_roll(p, saga__mono_ms());
    if (p->log_lines >= LOG_BURST) {
        p->log_left_out++;
        STAT_ADD(p, log_suppressed, 1);
        return;
    }
    p->log_lines++;
    p->log_fn(level, p->warning, p->log_arg);
}

void saga__participant_warn(saga_participant *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    say(p, SAGA_PARTICIPANT_LOG_WARN, fmt, ap);
    va_end(ap);
}

void saga__participant_fail(saga_participant *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    say(p, SAGA_PARTICIPANT_LOG_ERROR, fmt, ap);
    va_end(ap);
}
