/* Error codes to text, and the error-filling helper. */
#include <stdarg.h>
#include <stdio.h>

#include "saga/error.h"
#include "saga_shared.h"

const char *saga_strerror(int code)
{
    switch (code) {
    case SAGA_OK:
        return "success";
    case SAGA_EINVAL:
        return "invalid argument";
    case SAGA_ENOMEM:
        return "out of memory";
    case SAGA_EPROTO:
        return "protocol error (malformed message)";
    case SAGA_EKAFKA:
        return "Kafka error";
    case SAGA_EDB:
        return "database error";
    case SAGA_EEXIST:
        return "already exists";
    case SAGA_ENOTFOUND:
        return "not found";
    case SAGA_ESTATE:
        return "not valid in the current state";
    case SAGA_EDEF:
        return "invalid saga definition";
    case SAGA_EIO:
        return "I/O error";
    case SAGA_EAUTH:
        return "message not authenticated (signature missing or wrong)";
    }
    return "unknown error";
}

void saga__utf8_trim_tail(char *s, size_t len)
{
    size_t i = len, cont = 0;
    /* Back over continuation bytes to the last character's first byte. */
    while (i > 0 && cont < 4 && ((unsigned char)s[i - 1] & 0xC0) == 0x80) {
        i--;
        cont++;
    }
    if (i > 0) {
        unsigned char lead = (unsigned char)s[i - 1];
        size_t need = lead >= 0xF0 ? 3 : lead >= 0xE0 ? 2 : lead >= 0xC0 ? 1 : 0;
        if (lead >= 0xC0 && cont < need)
            s[i - 1] = '\0'; /* cut where the character began */
    }
}

int saga__error_set(saga_error *err, int code, const char *fmt, ...)
{
    if (err != NULL) {
        va_list ap;
        int n;
        err->code = code;
        va_start(ap, fmt);
        n = vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
        if (n >= (int)sizeof err->message) /* cut: not inside a character */
            saga__utf8_trim_tail(err->message, sizeof err->message - 1);
    }
    return code;
}

const char *saga_version(void)
{
    return SAGA_VERSION_STRING;
}

int saga_version_num(void)
{
    return SAGA_VERSION_NUM;
}

const char *saga__bytes_text(int64_t n, char *buf, size_t size)
{
    char digits[32];
    int len = snprintf(digits, sizeof digits, "%lld", (long long)n), o = 0;
    for (int i = 0; i < len && o + 2 < (int)size; i++) {
        if (i > 0 && digits[i - 1] != '-' && (len - i) % 3 == 0)
            buf[o++] = ',';
        buf[o++] = digits[i];
    }
    buf[o] = '\0';
    return buf;
}
