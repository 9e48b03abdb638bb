/* saga_engine_warn.c - warnings that could come once per message, written
 * at most once per WARN_EVERY_MS each, with how many were not written. */
#include "saga_engine_state.h"

void saga__engine_warn_limited(rate_limit *rl, const char *fmt, ...)
{
    int64_t now = saga__mono_ms();
    char msg[512];
    va_list ap;
    if (rl->last_ms != 0 && now - rl->last_ms < WARN_EVERY_MS) {
        rl->suppressed++;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (rl->suppressed > 0)
        saga_log(SAGA_LOG_WARN, "%s (and %llu more like it in the last %lld s)", msg,
                 (unsigned long long)rl->suppressed,
                 (long long)((now - rl->last_ms) / 1000));
    else
        saga_log(SAGA_LOG_WARN, "%s", msg);
    rl->last_ms = now;
    rl->suppressed = 0;
}

/* The count of warnings not written, once the interval is over, so that a
 * burst's tail is not left unsaid until the next one. */
void saga__engine_warn_flush(rate_limit *rl, const char *what)
{
    int64_t now = saga__mono_ms();
    if (rl->suppressed == 0 || now - rl->last_ms < WARN_EVERY_MS)
        return;
    saga_log(SAGA_LOG_WARN, "%llu more %s in the last %lld s",
             (unsigned long long)rl->suppressed, what,
             (long long)((now - rl->last_ms) / 1000));
    rl->last_ms = now;
    rl->suppressed = 0;
}
