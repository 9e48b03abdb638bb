/* saga_id.c - new saga ids: UUID version 7 (see saga_shared.h for why
 * time-ordered). Hand-written because libuuid gained version 7 only in
 * util-linux 2.41 (Debian 12 has 2.38) and PostgreSQL only in 18. */
#include <stdint.h>
#include <stdio.h>

#include <openssl/rand.h>

#include "saga_shared.h"

int saga__id_new(char out[37], saga_error *err)
{
    unsigned char b[16];
    uint64_t ms = (uint64_t)saga__wall_ms();

    if (RAND_bytes(b + 6, 10) != 1)
        return saga__error_set(err, SAGA_EIO,
                               "no random bytes for a saga id (libcrypto)");
    for (int i = 0; i < 6; i++) /* 48 bits of milliseconds, big-endian */
        b[i] = (unsigned char)(ms >> (40 - 8 * i));
    b[6] = (unsigned char)(0x70 | (b[6] & 0x0f)); /* version 7 */
    b[8] = (unsigned char)(0x80 | (b[8] & 0x3f)); /* variant 10 (RFC 9562) */
    snprintf(out, 37,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
             b[13], b[14], b[15]);
    return SAGA_OK;
}
