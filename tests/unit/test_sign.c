/* Message signatures (saga/sign.h): the test vectors of docs/PROTOCOL.md
 * (tests/data/sign/vectors.json, computed with Python's hmac), rotation,
 * every way a signature or a key file can be wrong. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "saga/sign.h"

#define K1 "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
#define K2 "abababababababababababababababababababababababababababababababab"

static saga_keys *keys(const char *a, const char *b)
{
    const char *hex[2] = {a, b};
    saga_keys *k = NULL;
    saga_error err = {0};
    assert_int_equal(saga_keys_from_hex(hex, b ? 2 : 1, &k, &err), SAGA_OK);
    return k;
}

static void test_vectors(void **state)
{
    json_error_t je;
    json_t *root = json_load_file("tests/data/sign/vectors.json", 0, &je), *v;
    size_t i;
    (void)state;
    assert_non_null(root);
    assert_true(json_array_size(json_object_get(root, "vectors")) >= 5);
    json_array_foreach(json_object_get(root, "vectors"), i, v)
    {
        const char *hex = json_string_value(json_object_get(v, "key_hex"));
        const char *topic = json_string_value(json_object_get(v, "topic"));
        const char *key = json_string_value(json_object_get(v, "message_key"));
        const char *value = json_string_value(json_object_get(v, "value"));
        const char *want = json_string_value(json_object_get(v, "signature"));
        saga_keys *k = keys(hex, NULL);
        char sig[SAGA_SIGNATURE_SIZE];
        saga_error err = {0};
        assert_int_equal(saga_sign(k, topic, key, strlen(key), value, strlen(value), sig),
                         SAGA_OK);
        assert_string_equal(sig, want);
        assert_int_equal(saga_verify(k, topic, key, strlen(key), value, strlen(value),
                                     want, strlen(want), &err),
                         SAGA_OK);
        saga_keys_free(k);
    }
    json_decref(root);
}

static void test_what_the_signature_covers(void **state)
{
    saga_keys *k = keys(K1, NULL);
    char sig[SAGA_SIGNATURE_SIZE];
    saga_error err = {0};
    const char *val = "{\"status\":\"ok\"}";
    (void)state;
    assert_int_equal(saga_sign(k, "saga.reply.payment", "id", 2, val, strlen(val), sig),
                     SAGA_OK);
    /* Another topic (a reply moved to another service's topic), key or
     * value: refused. */
    assert_int_equal(saga_verify(k, "saga.reply.inventory", "id", 2, val, strlen(val),
                                 sig, strlen(sig), &err),
                     SAGA_EAUTH);
    assert_non_null(strstr(err.message, "bad signature"));
    assert_int_equal(saga_verify(k, "saga.reply.payment", "ie", 2, val, strlen(val), sig,
                                 strlen(sig), &err),
                     SAGA_EAUTH);
    assert_int_equal(saga_verify(k, "saga.reply.payment", "id", 2, val, strlen(val) - 1,
                                 sig, strlen(sig), &err),
                     SAGA_EAUTH);
    /* The length prefixes: moving a byte from the key to the topic is not
     * the same message. */
    assert_int_equal(saga_verify(k, "saga.reply.paymenti", "d", 1, val, strlen(val), sig,
                                 strlen(sig), &err),
                     SAGA_EAUTH);
    /* Upper-case hex is accepted (hex is hex); the header cut, missing or
     * of another version is not. */
    {
        char up[SAGA_SIGNATURE_SIZE];
        memcpy(up, sig, sizeof up);
        for (char *c = up + 3; *c; c++)
            if (*c >= 'a' && *c <= 'f')
                *c = (char)(*c - 'a' + 'A');
        assert_int_equal(saga_verify(k, "saga.reply.payment", "id", 2, val, strlen(val),
                                     up, strlen(up), &err),
                         SAGA_OK);
    }
    assert_int_equal(saga_verify(k, "saga.reply.payment", "id", 2, val, strlen(val), sig,
                                 strlen(sig) - 1, &err),
                     SAGA_EAUTH);
    assert_non_null(strstr(err.message, "64 hex digits"));
    assert_int_equal(
        saga_verify(k, "saga.reply.payment", "id", 2, val, strlen(val), NULL, 0, &err),
        SAGA_EAUTH);
    assert_non_null(strstr(err.message, "unsigned"));
    sig[1] = '2';
    assert_int_equal(saga_verify(k, "saga.reply.payment", "id", 2, val, strlen(val), sig,
                                 strlen(sig), &err),
                     SAGA_EAUTH);
    sig[1] = '1';
    sig[10] = 'g';
    assert_int_equal(saga_verify(k, "saga.reply.payment", "id", 2, val, strlen(val), sig,
                                 strlen(sig), &err),
                     SAGA_EAUTH);
    saga_keys_free(k);
}

static void test_rotation(void **state)
{
    saga_keys *old = keys(K1, NULL), *both = keys(K2, K1), *fresh = keys(K2, NULL);
    char a[SAGA_SIGNATURE_SIZE], b[SAGA_SIGNATURE_SIZE];
    saga_error err = {0};
    (void)state;
    assert_int_equal(saga_keys_count(both), 2);
    assert_int_equal(saga_sign(old, "t", "k", 1, "v", 1, a), SAGA_OK);
    assert_int_equal(saga_sign(both, "t", "k", 1, "v", 1, b), SAGA_OK);
    /* Signed with the first key; either verifies. */
    assert_string_not_equal(a, b);
    assert_int_equal(saga_verify(both, "t", "k", 1, "v", 1, a, strlen(a), &err), SAGA_OK);
    assert_int_equal(saga_verify(both, "t", "k", 1, "v", 1, b, strlen(b), &err), SAGA_OK);
    assert_int_equal(saga_verify(fresh, "t", "k", 1, "v", 1, b, strlen(b), &err),
                     SAGA_OK);
    assert_int_equal(saga_verify(fresh, "t", "k", 1, "v", 1, a, strlen(a), &err),
                     SAGA_EAUTH);
    assert_non_null(strstr(err.message, "none of the 1 key"));
    saga_keys_free(old);
    saga_keys_free(both);
    saga_keys_free(fresh);
    saga_keys_free(NULL);
}

/* Write text to a fresh file of the given mode; the path in path. */
static void key_file(char path[64], const char *text, mode_t mode)
{
    int fd;
    snprintf(path, 64, "/tmp/saga-test-keyXXXXXX");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
}

static int load_error(const char *text, mode_t mode, const char *needle)
{
    char path[64];
    saga_keys *k = (saga_keys *)1;
    saga_error err = {0};
    int rc;
    key_file(path, text, mode);
    rc = saga_keys_load(path, &k, &err);
    unlink(path);
    assert_null(k);
    if (strstr(err.message, needle) == NULL)
        fail_msg("expected \"%s\" in \"%s\"", needle, err.message);
    /* The error never shows the key. */
    assert_null(strstr(err.message, "0001020304"));
    return rc;
}

static void test_key_files(void **state)
{
    char path[64];
    saga_keys *k = NULL;
    saga_error err = {0};
    char a[SAGA_SIGNATURE_SIZE], b[SAGA_SIGNATURE_SIZE];
    (void)state;
    key_file(path, "# payment, rotated 2026-12\n\n  " K2 "  \n" K1 "\n", 0600);
    assert_int_equal(saga_keys_load(path, &k, &err), SAGA_OK);
    unlink(path);
    assert_int_equal(saga_keys_count(k), 2);
    {
        saga_keys *mem = keys(K2, NULL);
        assert_int_equal(saga_sign(k, "t", NULL, 0, NULL, 0, a), SAGA_OK);
        assert_int_equal(saga_sign(mem, "t", NULL, 0, NULL, 0, b), SAGA_OK);
        assert_string_equal(a, b);
        saga_keys_free(mem);
    }
    saga_keys_free(k);
    /* Group-readable is allowed (a shared secret volume); others are not. */
    key_file(path, K1 "\n", 0640);
    assert_int_equal(saga_keys_load(path, &k, &err), SAGA_OK);
    unlink(path);
    saga_keys_free(k);

    assert_int_equal(load_error(K1 "\n", 0644, "readable or writable by others"),
                     SAGA_EIO);
    assert_int_equal(load_error("", 0600, "no key"), SAGA_EINVAL);
    assert_int_equal(load_error("# only a comment\n", 0600, "no key"), SAGA_EINVAL);
    assert_int_equal(load_error("abcd\n", 0600, ":1: the key is shorter than 32 bytes"),
                     SAGA_EINVAL);
    assert_int_equal(load_error("\n" K1 "0\n", 0600, ":2: the key is an odd number"),
                     SAGA_EINVAL);
    assert_int_equal(
        load_error(K1 "\n" K2 "\n" K1 "\n", 0600, ":3: the key is more than 2"),
        SAGA_EINVAL);
    assert_int_equal(load_error("zz" K1 "zz\n", 0600, ":1: the key is not hex"),
                     SAGA_EINVAL);
    assert_int_equal(saga_keys_load("/nonexistent/payment.key", &k, &err), SAGA_EIO);
    assert_non_null(strstr(err.message, "/nonexistent/payment.key"));
    assert_int_equal(saga_keys_load(NULL, &k, &err), SAGA_EINVAL);
}

static void test_arguments(void **state)
{
    saga_keys *k = keys(K1, NULL);
    char sig[SAGA_SIGNATURE_SIZE];
    saga_error err = {0};
    const char *none[1] = {NULL};
    (void)state;
    assert_int_equal(saga_sign(NULL, "t", "k", 1, "v", 1, sig), SAGA_EINVAL);
    assert_int_equal(saga_sign(k, NULL, "k", 1, "v", 1, sig), SAGA_EINVAL);
    assert_int_equal(saga_sign(k, "t", NULL, 1, "v", 1, sig), SAGA_EINVAL);
    assert_int_equal(saga_verify(NULL, "t", "k", 1, "v", 1, "x", 1, &err), SAGA_EINVAL);
    {
        saga_keys *other = (saga_keys *)1;
        assert_int_equal(saga_keys_from_hex(none, 1, &other, &err), SAGA_EINVAL);
        assert_null(other);
        assert_int_equal(saga_keys_from_hex(NULL, 0, &other, &err), SAGA_EINVAL);
    }
    assert_int_equal(saga_keys_count(NULL), 0);
    saga_keys_free(k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_what_the_signature_covers),
        cmocka_unit_test(test_rotation),
        cmocka_unit_test(test_key_files),
        cmocka_unit_test(test_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
