/* saga/sign.h - message authentication: an HMAC-SHA256 over a Kafka
 * message's topic, key and value, carried in its "saga-signature" header
 * (docs/PROTOCOL.md, "Signed messages", has the exact bytes and test
 * vectors), with a service's keys read from a file. sagad signs the
 * commands it sends to a service that has keys and verifies that
 * service's replies; a participant given a key file verifies commands and
 * signs replies. Two keys may be loaded at once: the first signs, either
 * verifies (key rotation). */
#ifndef SAGA_SIGN_H
#define SAGA_SIGN_H

#include <stddef.h>

#include "saga/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The header that carries a message's signature. */
#define SAGA_SIGNATURE_HEADER "saga-signature"

/* A signature as text: "v1=" and 64 lower-case hex digits, plus the NUL. */
#define SAGA_SIGNATURE_SIZE 68

/* A key file may hold at most this many keys (the current one and the one
 * being rotated in or out). */
#define SAGA_KEYS_MAX 2

/* One service's keys. Immutable once loaded: any number of threads may
 * sign and verify with one at the same time. */
typedef struct saga_keys saga_keys;

/* Read the keys in the file at path: one key a line, in hex (at least 32
 * bytes: 64 hex digits, at most 128 bytes), blank lines and lines starting
 * with '#' ignored; the first key signs. Generate one with
 * `openssl rand -hex 32`. The file must not be readable or writable by
 * others (mode o-rwx): a key anyone on the machine can read proves
 * nothing. On success *out is a new saga_keys the caller frees with
 * saga_keys_free; on failure *out is NULL and err names the file, the line
 * and what is wrong (SAGA_EIO: cannot read it or its mode is too open;
 * SAGA_EINVAL: a line is not a key, none or too many keys). The key bytes
 * are never copied into err. */
SAGA_API int saga_keys_load(const char *path, saga_keys **out, saga_error *err);

/* The same from keys in hex given in memory (n of them, 1..SAGA_KEYS_MAX),
 * for tests and for programs that keep keys elsewhere. */
SAGA_API int saga_keys_from_hex(const char *const *hex, int n, saga_keys **out,
                                saga_error *err);

/* Frees k (NULL: nothing), wiping the key bytes. */
SAGA_API void saga_keys_free(saga_keys *k);

/* How many keys k holds (1..SAGA_KEYS_MAX). */
SAGA_API int saga_keys_count(const saga_keys *k);

/* Sign the message (topic, key of key_len bytes, value of value_len bytes;
 * key and value may be NULL when their length is 0) with k's first key:
 * sig gets "v1=<64 hex digits>" and a NUL. Returns SAGA_OK, or
 * SAGA_EINVAL (NULL k, topic or sig) / SAGA_ENOMEM (libcrypto failed). */
SAGA_API int saga_sign(const saga_keys *k, const char *topic, const void *key,
                       size_t key_len, const void *value, size_t value_len,
                       char sig[SAGA_SIGNATURE_SIZE]);

/* Verify sig (sig_len bytes, as the header carries it; NULL: the message
 * has no signature) against every key of k, in constant time per key.
 * Returns SAGA_OK when one key made it; SAGA_EAUTH when sig is missing,
 * not of the form "v1=<64 hex digits>", or made by none of the keys (err
 * says which); SAGA_EINVAL for a NULL k or topic. */
SAGA_API int saga_verify(const saga_keys *k, const char *topic, const void *key,
                         size_t key_len, const void *value, size_t value_len,
                         const void *sig, size_t sig_len, saga_error *err);

#ifdef __cplusplus
}
#endif

#endif
