/* Duration parsing and formatting. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "saga_duration.h"

int saga_duration_parse(const char *s, int64_t *out_ms)
{
    int64_t total = 0;
    int parts = 0;

    if (s == NULL || *s == '\0')
        return -1;
    while (*s != '\0') {
        int64_t n = 0, unit;
        int digits = 0;
        while (isdigit((unsigned char)*s)) {
            if (n > (INT64_MAX - 9) / 10)
                return -1;
            n = n * 10 + (*s++ - '0');
            digits++;
        }
        if (digits == 0)
            return -1;
        if (strncmp(s, "ms", 2) == 0) {
            unit = 1;
            s += 2;
        } else if (*s == 's') {
            unit = 1000;
            s++;
        } else if (*s == 'm') {
            unit = 60 * 1000;
            s++;
        } else if (*s == 'h') {
            unit = 3600 * 1000;
            s++;
        } else {
            return -1;
        }
        if (n > (INT64_MAX - total) / unit)
            return -1;
        total += n * unit;
        parts++;
    }
    *out_ms = total;
    return parts > 0 ? 0 : -1;
}

void saga_duration_format(int64_t ms, char *buf, size_t size)
{
    size_t len = 0;
    static const struct {
        int64_t ms;
        const char *unit;
    } units[] = {{3600000, "h"}, {60000, "m"}, {1000, "s"}, {1, "ms"}};

    if (size == 0)
        return;
    buf[0] = '\0';
    if (ms <= 0) {
        snprintf(buf, size, "0ms");
        return;
    }
    for (size_t i = 0; i < sizeof units / sizeof units[0] && len < size; i++) {
        if (ms >= units[i].ms) {
            int w = snprintf(buf + len, size - len, "%lld%s",
                             (long long)(ms / units[i].ms), units[i].unit);
            if (w < 0)
                return;
            len += (size_t)w;
            ms %= units[i].ms;
        }
    }
}
