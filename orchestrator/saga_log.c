/* One line per event: time, level, message. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "saga_log.h"

static saga_log_level min_level = SAGA_LOG_INFO;

void saga_log_set_level(saga_log_level level)
{
    min_level = level;
}

int saga_log_parse_level(const char *text)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++)
        if (text != NULL && strcmp(text, names[i]) == 0)
            return i;
    return -1;
}

void saga_log(saga_log_level level, const char *fmt, ...)
{
    static const char *const names[] = {"DEBUG", "INFO", "WARN", "ERROR"};
    char ts[32], line[2048];
    struct timespec now;
    struct tm tm;
    va_list ap;

    if (level < min_level)
        return;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    /* One fprintf per line so concurrent writers do not interleave. */
    fprintf(stderr, "%s.%03ldZ %-5s %s\n", ts, now.tv_nsec / 1000000, names[level], line);
}
