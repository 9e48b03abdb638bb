/* saga_sign.c - HMAC-SHA256 signatures of messages (saga/sign.h) with
 * libcrypto's EVP_MAC, the key files they come from, and the SHA-256 the
 * API keeps of its tokens. The MAC covers
 * four length-prefixed fields, so no two different messages give the same
 * input: the label "saga.v1", the topic, the key and the value. */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "saga/sign.h"
#include "saga_shared.h"

#define KEY_MIN   32
#define KEY_MAX   128
#define MAC_LEN   32
#define SIG_LABEL "saga.v1"

struct saga_keys {
    EVP_MAC *hmac; /* fetched once: a fetch per message costs a lookup */
    int n;
    size_t len[SAGA_KEYS_MAX];
    unsigned char key[SAGA_KEYS_MAX][KEY_MAX];
};

/* A new, empty saga_keys with libcrypto's HMAC fetched, or NULL. */
static saga_keys *keys_alloc(void)
{
    saga_keys *k = calloc(1, sizeof *k);
    if (k != NULL && (k->hmac = EVP_MAC_fetch(NULL, "HMAC", NULL)) == NULL) {
        free(k);
        k = NULL;
    }
    return k;
}

static int hex_value(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decode the hex key in s[0..len) into k's next slot; *why on failure. */
static int add_key(saga_keys *k, const char *s, size_t len, const char **why)
{
    if (len % 2 != 0) {
        *why = "an odd number of hex digits";
        return -1;
    }
    if (len / 2 < KEY_MIN) {
        *why = "shorter than 32 bytes (64 hex digits; `openssl rand -hex 32` makes one)";
        return -1;
    }
    if (len / 2 > KEY_MAX) {
        *why = "longer than 128 bytes (256 hex digits)";
        return -1;
    }
    if (k->n == SAGA_KEYS_MAX) {
        *why = "more than 2 keys (the current one and the one being rotated)";
        return -1;
    }
    for (size_t i = 0; i < len; i += 2) {
        int hi = hex_value((unsigned char)s[i]), lo = hex_value((unsigned char)s[i + 1]);
        if (hi < 0 || lo < 0) {
            *why = "not hex (use only 0-9 and a-f)";
            OPENSSL_cleanse(k->key[k->n], KEY_MAX);
            return -1;
        }
        k->key[k->n][i / 2] = (unsigned char)(hi << 4 | lo);
    }
    k->len[k->n++] = len / 2;
    return 0;
}

int saga_keys_from_hex(const char *const *hex, int n, saga_keys **out, saga_error *err)
{
    saga_keys *k;
    const char *why = NULL;
    if (out != NULL)
        *out = NULL;
    if (out == NULL || hex == NULL || n < 1 || n > SAGA_KEYS_MAX)
        return saga__error_set(err, SAGA_EINVAL,
                               "saga_keys_from_hex: 1 or 2 keys, and out");
    if ((k = keys_alloc()) == NULL)
        return saga__error_set(err, SAGA_ENOMEM, "out of memory");
    for (int i = 0; i < n; i++)
        if (hex[i] == NULL || add_key(k, hex[i], strlen(hex[i]), &why) != 0) {
            saga_keys_free(k);
            return saga__error_set(err, SAGA_EINVAL, "key %d: %s", i + 1,
                                   why ? why : "NULL");
        }
    *out = k;
    return SAGA_OK;
}

int saga_keys_load(const char *path, saga_keys **out, saga_error *err)
{
    FILE *f;
    char line[1024];
    int lineno = 0, rc = SAGA_OK;
    saga_keys *k;

    if (out != NULL)
        *out = NULL;
    if (path == NULL || out == NULL)
        return saga__error_set(err, SAGA_EINVAL,
                               "saga_keys_load: path and out are needed");
    if ((f = saga__open_secret(path, "key file ", err)) == NULL)
        return SAGA_EIO;
    if ((k = keys_alloc()) == NULL) {
        fclose(f);
        return saga__error_set(err, SAGA_ENOMEM, "out of memory");
    }
    while (rc == SAGA_OK && fgets(line, sizeof line, f) != NULL) {
        size_t len = strlen(line);
        const char *s = line, *why = NULL;
        lineno++;
        if (len == sizeof line - 1 && line[len - 1] != '\n') {
            rc = saga__error_set(err, SAGA_EINVAL, "key file %s:%d: line too long", path,
                                 lineno);
            break;
        }
        while (*s == ' ' || *s == '\t')
            s++;
        while (len > 0 && isspace((unsigned char)line[len - 1]))
            len--;
        if (s >= line + len || *s == '#')
            continue;
        if (add_key(k, s, (size_t)(line + len - s), &why) != 0)
            rc = saga__error_set(err, SAGA_EINVAL, "key file %s:%d: the key is %s", path,
                                 lineno, why);
    }
    if (rc == SAGA_OK && ferror(f))
        rc = saga__error_set(err, SAGA_EIO, "key file %s: read error", path);
    if (rc == SAGA_OK && k->n == 0)
        rc =
            saga__error_set(err, SAGA_EINVAL,
                            "key file %s: no key (one hex key a line; `openssl rand -hex "
                            "32` makes one)",
                            path);
    OPENSSL_cleanse(line, sizeof line);
    fclose(f);
    if (rc != SAGA_OK) {
        saga_keys_free(k);
        return rc;
    }
    *out = k;
    return SAGA_OK;
}

void saga_keys_free(saga_keys *k)
{
    if (k == NULL)
        return;
    EVP_MAC_free(k->hmac);
    OPENSSL_cleanse(k, sizeof *k);
    free(k);
}

int saga_keys_count(const saga_keys *k)
{
    return k == NULL ? 0 : k->n;
}

static int mac_field(EVP_MAC_CTX *c, const void *p, size_t len)
{
    unsigned char be[4] = {(unsigned char)(len >> 24), (unsigned char)(len >> 16),
                           (unsigned char)(len >> 8), (unsigned char)len};
    if (len > UINT32_MAX)
        return 0;
    return EVP_MAC_update(c, be, 4) && (len == 0 || EVP_MAC_update(c, p, len));
}

/* The MAC of the message under key i of k into mac[MAC_LEN]. */
static int compute(const saga_keys *k, int i, const char *topic, const void *key,
                   size_t key_len, const void *value, size_t value_len,
                   unsigned char mac[MAC_LEN])
{
    EVP_MAC_CTX *c = EVP_MAC_CTX_new(k->hmac);
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end()};
    size_t outl = 0;
    int ok = c != NULL && EVP_MAC_init(c, k->key[i], k->len[i], params) &&
             mac_field(c, SIG_LABEL, strlen(SIG_LABEL)) &&
             mac_field(c, topic, strlen(topic)) && mac_field(c, key, key_len) &&
             mac_field(c, value, value_len) && EVP_MAC_final(c, mac, &outl, MAC_LEN) &&
             outl == MAC_LEN;
    EVP_MAC_CTX_free(c);
    return ok ? 0 : -1;
}

int saga_sign(const saga_keys *k, const char *topic, const void *key, size_t key_len,
              const void *value, size_t value_len, char sig[SAGA_SIGNATURE_SIZE])
{
    static const char digits[] = "0123456789abcdef";
    unsigned char mac[MAC_LEN];
    if (k == NULL || k->n < 1 || topic == NULL || sig == NULL ||
        (key == NULL && key_len > 0) || (value == NULL && value_len > 0))
        return SAGA_EINVAL;
    if (compute(k, 0, topic, key, key_len, value, value_len, mac) != 0)
        return SAGA_ENOMEM;
    memcpy(sig, "v1=", 3);
    for (int i = 0; i < MAC_LEN; i++) {
        sig[3 + 2 * i] = digits[mac[i] >> 4];
        sig[4 + 2 * i] = digits[mac[i] & 15];
    }
    sig[SAGA_SIGNATURE_SIZE - 1] = '\0';
    return SAGA_OK;
}

int saga_verify(const saga_keys *k, const char *topic, const void *key, size_t key_len,
                const void *value, size_t value_len, const void *sig, size_t sig_len,
                saga_error *err)
{
    const char *s = sig;
    unsigned char want[MAC_LEN], mac[MAC_LEN];
    if (k == NULL || k->n < 1 || topic == NULL || (key == NULL && key_len > 0) ||
        (value == NULL && value_len > 0))
        return saga__error_set(err, SAGA_EINVAL,
                               "saga_verify: keys and topic are needed");
    if (sig == NULL)
        return saga__error_set(err, SAGA_EAUTH, "unsigned: no %s header",
                               SAGA_SIGNATURE_HEADER);
    if (sig_len != SAGA_SIGNATURE_SIZE - 1 || memcmp(s, "v1=", 3) != 0)
        return saga__error_set(err, SAGA_EAUTH,
                               "%s header of %zu bytes is not \"v1=\" and 64 hex digits",
                               SAGA_SIGNATURE_HEADER, sig_len);
    for (int i = 0; i < MAC_LEN; i++) {
        int hi = hex_value((unsigned char)s[3 + 2 * i]);
        int lo = hex_value((unsigned char)s[4 + 2 * i]);
        if (hi < 0 || lo < 0)
            return saga__error_set(err, SAGA_EAUTH,
                                   "%s header is not \"v1=\" and 64 hex digits",
                                   SAGA_SIGNATURE_HEADER);
        want[i] = (unsigned char)(hi << 4 | lo);
    }
    for (int i = 0; i < k->n; i++) {
        if (compute(k, i, topic, key, key_len, value, value_len, mac) != 0)
            return saga__error_set(err, SAGA_ENOMEM, "computing an HMAC failed");
        if (CRYPTO_memcmp(mac, want, MAC_LEN) == 0)
            return SAGA_OK;
    }
    return saga__error_set(err, SAGA_EAUTH,
                           "bad signature: made by none of the %d key(s) for topic %s",
                           k->n, topic);
}

int saga__sha256_hex(const void *data, size_t len, char out[65])
{
    static const char digits[] = "0123456789abcdef";
    unsigned char md[32];
    unsigned int n = 0;
    if (EVP_Digest(data, len, md, &n, EVP_sha256(), NULL) != 1 || n != 32)
        return -1;
    for (int i = 0; i < 32; i++) {
        out[2 * i] = digits[md[i] >> 4];
        out[2 * i + 1] = digits[md[i] & 15];
    }
    out[64] = '\0';
    return 0;
}
