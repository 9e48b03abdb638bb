/* sagad's and sagactl's log lines (stderr). Library code never logs; the
 * programs do, through this. */
#ifndef SAGA_LOG_H
#define SAGA_LOG_H

typedef enum saga_log_level {
    SAGA_LOG_DEBUG = 0,
    SAGA_LOG_INFO,
    SAGA_LOG_WARN,
    SAGA_LOG_ERROR,
} saga_log_level;

void saga_log_set_level(saga_log_level level);
/* Parse "debug", "info", "warn", "error"; -1 if unknown. */
int saga_log_parse_level(const char *text);

void saga_log(saga_log_level level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

#endif
