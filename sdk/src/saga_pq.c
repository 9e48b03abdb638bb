/* libpq helpers shared by the SDK and sagad (see saga_shared.h): quiet
 * notices, and JSON as PostgreSQL prints it read back whole. */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "saga_shared.h"

static void ignore_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

void saga__pq_quiet(PGconn *db)
{
    PQsetNoticeProcessor(db, ignore_notice, NULL);
}

/* Integer literals longer than this many digits do not fit json_int_t. */
#define MAX_INT_DIGITS 18

json_t *saga__json_from_pg(const char *text, size_t flags, json_error_t *err)
{
    json_t *j = json_loads(text, flags, err);
    size_t n, o = 0;
    char *buf;
    int in_string = 0;
    if (j != NULL || text == NULL)
        return j;
    /* Rewrite every integer literal over MAX_INT_DIGITS digits as a real
     * ("...0.0"), outside strings, and try once more. At most one such
     * literal per MAX_INT_DIGITS + 1 bytes, each growing by 2. */
    n = strlen(text);
    if ((buf = malloc(n + 2 * (n / (MAX_INT_DIGITS + 1)) + 3)) == NULL)
        return NULL;
    for (size_t i = 0; i < n;) {
        char c = text[i];
        if (in_string) {
            buf[o++] = c;
            if (c == '\\' && i + 1 < n)
                buf[o++] = text[++i];
            else if (c == '"')
                in_string = 0;
            i++;
        } else if (c == '"') {
            in_string = 1;
            buf[o++] = text[i++];
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            size_t start = i, digits = 0;
            int real = 0;
            while (i < n && strchr("-+0123456789.eE", text[i]) != NULL) {
                digits += text[i] >= '0' && text[i] <= '9';
                real |= text[i] == '.' || text[i] == 'e' || text[i] == 'E';
                i++;
            }
            memcpy(buf + o, text + start, i - start);
            o += i - start;
            if (!real && digits > MAX_INT_DIGITS) {
                buf[o++] = '.';
                buf[o++] = '0';
            }
        } else {
            buf[o++] = text[i++];
        }
    }
    buf[o] = '\0';
    j = json_loads(buf, flags, err);
    free(buf);
    return j;
}
