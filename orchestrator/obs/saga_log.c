/* One line per event, human or JSON: time, level, message, fields. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "saga_log.h"

#define MSG_MAX      4096 /* longer messages are truncated */
#define LOG_LINE_MAX 8192 /* lines up to this need no allocation */

static saga_log_level min_level = SAGA_LOG_INFO;
static saga_log_format chosen = SAGA_LOG_FORMAT_AUTO;
static FILE *output; /* NULL: stderr */

int saga_log_enabled(saga_log_level level)
{
    return level >= min_level;
}

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

void saga_log_set_format(saga_log_format format)
{
    chosen = format;
}

int saga_log_parse_format(const char *text)
{
    static const char *const names[] = {"auto", "human", "json"};
    for (int i = 0; i < 3; i++)
        if (text != NULL && strcmp(text, names[i]) == 0)
            return i;
    return -1;
}

void saga_log_set_output(FILE *out)
{
    output = out;
}

saga_log_format saga_log_effective_format(void)
{
    FILE *out = output != NULL ? output : stderr;
    if (chosen != SAGA_LOG_FORMAT_AUTO)
        return chosen;
    /* A person at a terminal reads the human form; a file, journald or a
     * log shipper gets JSON it can parse. */
    return isatty(fileno(out)) ? SAGA_LOG_FORMAT_HUMAN : SAGA_LOG_FORMAT_JSON;
}

/* ---- formatting into a bounded buffer, counting what does not fit ---- */

typedef struct line {
    char *buf;
    size_t size, len; /* len counts everything, also what did not fit */
} line;

static void put(line *l, const char *s, size_t n)
{
    if (l->len + 1 < l->size) {
        size_t room = l->size - 1 - l->len;
        memcpy(l->buf + l->len, s, n < room ? n : room);
    }
    l->len += n;
}

static void puts_(line *l, const char *s)
{
    put(l, s, strlen(s));
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if it is not one. */
static size_t utf8_len(const unsigned char *s)
{
    size_t n;
    uint32_t cp;
    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        n = 2, cp = s[0] & 0x1f;
    else if (s[0] >= 0xe0 && s[0] <= 0xef)
        n = 3, cp = s[0] & 0x0f;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        n = 4, cp = s[0] & 0x07;
    else
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0; /* also stops at the NUL */
        cp = cp << 6 | (s[i] & 0x3f);
    }
    /* Overlong forms, surrogates and beyond U+10FFFF are not UTF-8. */
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

static void put_json_string(line *l, const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    puts_(l, "\"");
    while (*s) {
        size_t n = utf8_len(s);
        char esc[8];
        if (n == 0) {
            puts_(l, "\\ufffd");
            s++;
        } else if (*s == '"' || *s == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*s;
            put(l, esc, 2);
            s++;
        } else if (*s == '\n') {
            puts_(l, "\\n");
            s++;
        } else if (*s == '\t') {
            puts_(l, "\\t");
            s++;
        } else if (*s == '\r') {
            puts_(l, "\\r");
            s++;
        } else if (*s < 0x20 || *s == 0x7f) {
            snprintf(esc, sizeof esc, "\\u%04x", *s);
            puts_(l, esc);
            s++;
        } else {
            put(l, (const char *)s, n);
            s += n;
        }
    }
    puts_(l, "\"");
}

/* In the human form a field value with a space or quote is quoted (Go's
 * logfmt habit) so that the line still splits into key=value pairs. */
static void put_human_value(line *l, const char *v)
{
    if (*v != '\0' && strpbrk(v, " \"=\n\t") == NULL) {
        puts_(l, v);
        return;
    }
    put_json_string(l, v);
}

static void put_field(line *l, saga_log_format f, const char *key, const char *value)
{
    if (value == NULL)
        return;
    if (f == SAGA_LOG_FORMAT_JSON) {
        puts_(l, ",\"");
        puts_(l, key);
        puts_(l, "\":");
        put_json_string(l, value);
    } else {
        puts_(l, " ");
        puts_(l, key);
        puts_(l, "=");
        put_human_value(l, value);
    }
}

size_t saga_log_format_line(char *buf, size_t size, saga_log_format format,
                            saga_log_level level, const struct timespec *when,
                            const saga_log_ctx *ctx, const char *msg)
{
    static const char *const upper[] = {"DEBUG", "INFO", "WARN", "ERROR"};
    static const char *const lower[] = {"debug", "info", "warn", "error"};
    line l = {buf, size, 0};
    char ts[48], attempt[16];
    struct tm tm;
    size_t n;
    int ms;
    int lv = level >= SAGA_LOG_DEBUG && level <= SAGA_LOG_ERROR ? (int)level : 3;

    gmtime_r(&when->tv_sec, &tm);
    n = strftime(ts, sizeof ts - 6, "%Y-%m-%dT%H:%M:%S", &tm);
    /* Milliseconds by hand: snprintf's %03ld cannot prove the width. */
    ms = (int)(when->tv_nsec / 1000000 % 1000);
    ts[n++] = '.';
    ts[n++] = (char)('0' + ms / 100);
    ts[n++] = (char)('0' + ms / 10 % 10);
    ts[n++] = (char)('0' + ms % 10);
    ts[n++] = 'Z';
    ts[n] = '\0';
    if (msg == NULL)
        msg = "";
    if (ctx != NULL && ctx->attempt > 0)
        snprintf(attempt, sizeof attempt, "%d", ctx->attempt);
    if (format == SAGA_LOG_FORMAT_JSON) {
        puts_(&l, "{\"time\":\"");
        puts_(&l, ts);
        puts_(&l, "\",\"level\":\"");
        puts_(&l, lower[lv]);
        puts_(&l, "\",\"msg\":");
        put_json_string(&l, msg);
    } else {
        char head[80];
        snprintf(head, sizeof head, "%s %-5s ", ts, upper[lv]);
        puts_(&l, head);
        puts_(&l, msg);
    }
    if (ctx != NULL) {
        put_field(&l, format, "saga_id", ctx->saga_id);
        put_field(&l, format, "step", ctx->step);
        if (ctx->attempt > 0) {
            if (format == SAGA_LOG_FORMAT_JSON) {
                puts_(&l, ",\"attempt\":");
                puts_(&l, attempt);
            } else {
                puts_(&l, " attempt=");
                puts_(&l, attempt);
            }
        }
        put_field(&l, format, "trace_id", ctx->trace_id);
        put_field(&l, format, "span_id", ctx->span_id);
    }
    puts_(&l, format == SAGA_LOG_FORMAT_JSON ? "}\n" : "\n");
    if (size > 0)
        buf[l.len < size ? l.len : size - 1] = '\0';
    return l.len;
}

static void vlog(saga_log_level level, const saga_log_ctx *ctx, const char *fmt,
                 va_list ap)
{
    char msg[MSG_MAX], stack[LOG_LINE_MAX], *text = stack;
    struct timespec now;
    saga_log_format f;
    size_t need;
    FILE *out = output != NULL ? output : stderr;

    if (level < min_level)
        return;
    clock_gettime(CLOCK_REALTIME, &now);
    vsnprintf(msg, sizeof msg, fmt, ap);
    f = saga_log_effective_format();
    need = saga_log_format_line(stack, sizeof stack, f, level, &now, ctx, msg);
    if (need >= sizeof stack && (text = malloc(need + 1)) != NULL)
        saga_log_format_line(text, need + 1, f, level, &now, ctx, msg);
    else if (text == NULL)
        text = stack; /* truncated, but something gets out */
    /* One stdio call per line so concurrent writers do not interleave. */
    fputs(text, out);
    fflush(out);
    if (text != stack)
        free(text);
}

void saga_log(saga_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(level, NULL, fmt, ap);
    va_end(ap);
}

void saga_log_fields(saga_log_level level, const saga_log_ctx *ctx, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(level, ctx, fmt, ap);
    va_end(ap);
}
