/* W3C Trace Context: parsing, formatting and making traceparent values. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "saga/trace.h"

static int hexval(char c)
{
    /* The specification allows lowercase only. */
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Decode 2 * n lowercase hex characters into n bytes. */
static int unhex(const char *s, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

static void tohex(const uint8_t *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 0xf];
    }
    out[2 * n] = '\0';
}

static int all_zero(const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (b[i] != 0)
            return 0;
    return 1;
}

int saga_traceparent_parse(const char *text, size_t len, saga_trace_context *out)
{
    uint8_t version;
    if (out == NULL)
        return SAGA_EINVAL;
    memset(out, 0, sizeof *out);
    if (text == NULL)
        return SAGA_EINVAL;
    if (len < SAGA_TRACEPARENT_LEN)
        return SAGA_EPROTO;
    if (unhex(text, &version, 1) != 0 || version == 0xff)
        return SAGA_EPROTO;
    /* Version 00 is exactly 55 characters; a later version may append
     * fields after a '-', which we do not know and skip. */
    if (version == 0 ? len != SAGA_TRACEPARENT_LEN
                     : len > SAGA_TRACEPARENT_LEN && text[SAGA_TRACEPARENT_LEN] != '-')
        return SAGA_EPROTO;
    if (text[2] != '-' || text[35] != '-' || text[52] != '-')
        return SAGA_EPROTO;
    if (unhex(text + 3, out->trace_id, 16) != 0 ||
        unhex(text + 36, out->span_id, 8) != 0 || unhex(text + 53, &out->flags, 1) != 0 ||
        all_zero(out->trace_id, 16) || all_zero(out->span_id, 8)) {
        memset(out, 0, sizeof *out);
        return SAGA_EPROTO;
    }
    return SAGA_OK;
}

int saga_traceparent_format(const saga_trace_context *ctx, char *buf, size_t size)
{
    if (buf != NULL && size > 0)
        buf[0] = '\0';
    if (ctx == NULL || buf == NULL || size < SAGA_TRACEPARENT_LEN + 1 ||
        all_zero(ctx->trace_id, 16) || all_zero(ctx->span_id, 8))
        return SAGA_EINVAL;
    memcpy(buf, "00-", 3);
    tohex(ctx->trace_id, 16, buf + 3);
    buf[35] = '-';
    tohex(ctx->span_id, 8, buf + 36);
    buf[52] = '-';
    tohex(&ctx->flags, 1, buf + 53);
    return SAGA_OK;
}

/* Fill n bytes from the kernel; getrandom first, /dev/urandom where the
 * system call is missing (old kernels, some sandboxes). */
static int random_bytes(uint8_t *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = getrandom(buf + got, n - got, 0);
        if (r > 0) {
            got += (size_t)r;
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        break;
    }
    if (got < n) {
        int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return -1;
        while (got < n) {
            ssize_t r = read(fd, buf + got, n - got);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0) {
                close(fd);
                return -1;
            }
            got += (size_t)r;
        }
        close(fd);
    }
    return 0;
}

/* A random id that is not all zero (invalid on the wire). */
static int random_id(uint8_t *id, size_t n)
{
    do {
        if (random_bytes(id, n) != 0)
            return -1;
    } while (all_zero(id, n));
    return 0;
}

int saga_trace_new(saga_trace_context *out, uint8_t flags)
{
    if (out == NULL)
        return SAGA_EINVAL;
    memset(out, 0, sizeof *out);
    if (random_id(out->trace_id, 16) != 0 || random_id(out->span_id, 8) != 0) {
        memset(out, 0, sizeof *out);
        return SAGA_EIO;
    }
    out->flags = flags;
    return SAGA_OK;
}

int saga_trace_child(const saga_trace_context *parent, saga_trace_context *out)
{
    uint8_t span[8];
    if (parent == NULL || out == NULL || all_zero(parent->trace_id, 16) ||
        all_zero(parent->span_id, 8))
        return SAGA_EINVAL;
    /* A child span id equal to the parent's would make a loop in the trace. */
    do {
        if (random_id(span, sizeof span) != 0)
            return SAGA_EIO;
    } while (memcmp(span, parent->span_id, sizeof span) == 0);
    if (out != parent)
        *out = *parent;
    memcpy(out->span_id, span, sizeof span);
    return SAGA_OK;
}

char *saga_trace_id_hex(const saga_trace_context *ctx, char buf[SAGA_TRACE_ID_HEX_SIZE])
{
    tohex(ctx->trace_id, 16, buf);
    return buf;
}

char *saga_span_id_hex(const saga_trace_context *ctx, char buf[SAGA_SPAN_ID_HEX_SIZE])
{
    tohex(ctx->span_id, 8, buf);
    return buf;
}

int saga_command_trace(const saga_command *cmd, saga_trace_context *out)
{
    if (out != NULL)
        memset(out, 0, sizeof *out);
    if (cmd == NULL || out == NULL)
        return SAGA_EINVAL;
    if (cmd->traceparent == NULL)
        return SAGA_ENOTFOUND;
    return saga_traceparent_parse(cmd->traceparent, strlen(cmd->traceparent), out);
}
