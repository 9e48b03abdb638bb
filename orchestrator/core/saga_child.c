/* saga_child.c - a child saga's id (a version 5 UUID of its parent and
 * step: OpenSSL's SHA-1, as RFC 9562 asks) and the names of how a child
 * ends. Pure. */
#include <stdio.h>
#include <string.h>

#include <openssl/sha.h>

#include "saga_child.h"

/* The namespace of child ids (a random UUID, fixed for ever: changing it
 * would give a retried step a second child). */
static const unsigned char child_ns[16] = {0x5f, 0x0b, 0x3c, 0x1e, 0x9a, 0x47,
                                           0x4d, 0x2e, 0x8b, 0x61, 0x3c, 0x7d,
                                           0x9e, 0x2a, 0x4f, 0x10};

void saga_child_id(const char *parent, int step, char out[SAGA_ID_LEN + 1])
{
    unsigned char buf[16 + SAGA_ID_LEN + 16], md[SHA_DIGEST_LENGTH];
    int n = snprintf((char *)buf + 16, sizeof buf - 16, "%.36s/%d", parent, step);
    memcpy(buf, child_ns, 16);
    SHA1(buf, 16 + (size_t)n, md);
    md[6] = (unsigned char)((md[6] & 0x0f) | 0x50);
    md[8] = (unsigned char)((md[8] & 0x3f) | 0x80);
    snprintf(out, SAGA_ID_LEN + 1,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             md[0], md[1], md[2], md[3], md[4], md[5], md[6], md[7], md[8], md[9], md[10],
             md[11], md[12], md[13], md[14], md[15]);
}

static const char *const end_names[SAGA_CHILD_END_COUNT] = {
    "completed", "compensated", "resolved", "rejected", "uncompensable"};

const char *saga_child_end_name(saga_child_end e)
{
    return (unsigned)e < SAGA_CHILD_END_COUNT ? end_names[e] : "?";
}

int saga_child_end_parse(const char *text, saga_child_end *out)
{
    for (int i = 0; i < SAGA_CHILD_END_COUNT; i++)
        if (text != NULL && strcmp(text, end_names[i]) == 0) {
            *out = (saga_child_end)i;
            return 0;
        }
    return -1;
}
