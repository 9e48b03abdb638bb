/* The shared protocol test vectors (tests/vectors/, README.md there) run
 * through libsaga's own codec, signer and librdkafka's partitioner: the
 * commands and replies decode to what each file expects, or fail naming
 * the field with libsaga's words; replies encode to the exact bytes;
 * signatures verify or not; each key lands on the expected partition.
 * The Python SDK (sdk/python) and the Go SDK run the same files. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "saga/protocol.h"
#include "saga/sign.h"

#define DIR_VECTORS "tests/vectors"

typedef void (*vector_fn)(const char *path, json_t *v);

/* Every *.json in DIR_VECTORS/sub, in name order; returns how many. */
static int each_vector(const char *sub, vector_fn fn)
{
    char dir[256], path[512];
    struct dirent **names = NULL;
    int n, count = 0;
    snprintf(dir, sizeof dir, "%s/%s", DIR_VECTORS, sub);
    n = scandir(dir, &names, NULL, alphasort);
    if (n < 0)
        fail_msg("cannot read %s (run from the repository's root)", dir);
    for (int i = 0; i < n; i++) {
        size_t len = strlen(names[i]->d_name);
        if (len > 5 && strcmp(names[i]->d_name + len - 5, ".json") == 0) {
            json_error_t je;
            json_t *v;
            snprintf(path, sizeof path, "%s/%s", dir, names[i]->d_name);
            v = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
            if (v == NULL)
                fail_msg("%s: %s (line %d)", path, je.text, je.line);
            fn(path, v);
            json_decref(v);
            count++;
        }
        free(names[i]);
    }
    free(names);
    return count;
}

static const char b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static size_t unbase64(const char *in, unsigned char *out)
{
    size_t n = 0;
    unsigned acc = 0;
    int bits = 0;
    for (; *in != '\0' && *in != '='; in++) {
        const char *p = strchr(b64, *in);
        assert_non_null(p);
        acc = (acc << 6) | (unsigned)(p - b64);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    return n;
}

/* The message's bytes: "message" (its UTF-8), "message_base64" or
 * "message_repeat" (prefix + fill * count + suffix). Caller frees. */
static char *message_bytes(const char *path, json_t *v, size_t *len)
{
    json_t *m = json_object_get(v, "message"), *b = json_object_get(v, "message_base64"),
           *r = json_object_get(v, "message_repeat");
    char *buf;
    if (json_is_string(m)) {
        *len = json_string_length(m);
        buf = malloc(*len + 1);
        memcpy(buf, json_string_value(m), *len + 1);
        return buf;
    }
    if (json_is_string(b)) {
        buf = malloc(json_string_length(b) + 1);
        *len = unbase64(json_string_value(b), (unsigned char *)buf);
        return buf;
    }
    if (json_is_object(r)) {
        const char *pre = json_string_value(json_object_get(r, "prefix"));
        const char *fill = json_string_value(json_object_get(r, "fill"));
        const char *suf = json_string_value(json_object_get(r, "suffix"));
        size_t count = (size_t)json_integer_value(json_object_get(r, "count"));
        size_t fl = strlen(fill), at;
        *len = strlen(pre) + fl * count + strlen(suf);
        buf = malloc(*len + 1);
        at = strlen(pre);
        memcpy(buf, pre, at);
        for (size_t i = 0; i < count; i++, at += fl)
            memcpy(buf + at, fill, fl);
        memcpy(buf + at, suf, strlen(suf) + 1);
        return buf;
    }
    fail_msg("%s: no message, message_base64 or message_repeat", path);
    return NULL;
}

static json_t *str_or_null(const char *s)
{
    return s != NULL ? json_string(s) : json_null();
}

static json_t *command_json(const saga_command *c)
{
    return json_pack(
        "{s:i, s:i, s:s, s:s, s:i, s:i, s:s, s:s, s:s, s:s, s:i, s:I, s:s, s:O}", "v",
        c->v, "element", c->element, "saga_id", c->saga_id, "saga", c->saga,
        "saga_version", c->saga_version, "step", c->step, "step_name", c->step_name,
        "phase", saga_phase_name(c->phase), "action", c->action, "command_id",
        c->command_id, "attempt", c->attempt, "deadline", (json_int_t)c->deadline,
        "reply_to", c->reply_to, "payload", c->payload);
}

static json_t *reply_json(const saga_reply *r)
{
    return json_pack("{s:i, s:i, s:s, s:i, s:s, s:s, s:i, s:s, s:O, s:o, s:o, s:I}", "v",
                     r->v, "element", r->element, "saga_id", r->saga_id, "step", r->step,
                     "phase", saga_phase_name(r->phase), "command_id", r->command_id,
                     "attempt", r->attempt, "status", saga_reply_status_name(r->status),
                     "output", r->output != NULL ? r->output : json_null(), "error_code",
                     str_or_null(r->error_code), "error_message",
                     str_or_null(r->error_message), "retry_after",
                     (json_int_t)r->retry_after);
}

/* An expected error: libsaga's exact words ("message") or their start
 * ("message_prefix"), naming the field (its last part, quoted). */
static void check_error(const char *path, json_t *want, int rc, const saga_error *err)
{
    const char *msg = json_string_value(json_object_get(want, "message"));
    const char *prefix = json_string_value(json_object_get(want, "message_prefix"));
    const char *field = json_string_value(json_object_get(want, "field"));
    if (rc != SAGA_EPROTO)
        fail_msg("%s: decoded (%d), but should fail: %s", path, rc,
                 msg      ? msg
                 : prefix ? prefix
                          : "?");
    if (msg != NULL && strcmp(msg, err->message) != 0)
        fail_msg("%s: libsaga says\n  %s\nthe vector says\n  %s", path, err->message,
                 msg);
    if (prefix != NULL && strncmp(prefix, err->message, strlen(prefix)) != 0)
        fail_msg("%s: libsaga says \"%s\", not starting \"%s\"", path, err->message,
                 prefix);
    if (field != NULL) {
        char quoted[300];
        const char *last = strrchr(field, '.');
        snprintf(quoted, sizeof quoted, "\"%s\"", last ? last + 1 : field);
        if (strstr(err->message, quoted) == NULL)
            fail_msg("%s: libsaga's error \"%s\" does not name %s", path, err->message,
                     field);
    }
}

static void check_equal(const char *path, json_t *got, json_t *want)
{
    if (!json_equal(got, want)) {
        char *g = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS),
             *w = json_dumps(want, JSON_COMPACT | JSON_SORT_KEYS);
        fprintf(stderr, "%s:\n  libsaga: %.2000s\n  vector:  %.2000s\n", path, g, w);
        free(g);
        free(w);
        fail_msg("%s: decoded differently", path);
    }
}

static void run_command(const char *path, json_t *v)
{
    size_t len;
    char *buf = message_bytes(path, v, &len);
    saga_command c;
    saga_error err = {0};
    json_t *expect = json_object_get(v, "expect");
    int rc = saga_command_decode(buf, len, &c, &err);
    assert_string_equal(json_string_value(json_object_get(v, "kind")), "command");
    if (json_object_get(expect, "ok") != NULL) {
        json_t *got;
        if (rc != SAGA_OK)
            fail_msg("%s: libsaga refused it: %s", path, err.message);
        got = command_json(&c);
        check_equal(path, got, json_object_get(expect, "ok"));
        json_decref(got);
        saga_command_clear(&c);
    } else {
        check_error(path, json_object_get(expect, "error"), rc, &err);
    }
    free(buf);
}

static void run_reply(const char *path, json_t *v)
{
    size_t len;
    char *buf = message_bytes(path, v, &len);
    saga_reply r;
    saga_error err = {0};
    json_t *expect = json_object_get(v, "expect");
    int rc = saga_reply_decode(buf, len, &r, &err);
    assert_string_equal(json_string_value(json_object_get(v, "kind")), "reply");
    if (json_object_get(expect, "ok") != NULL) {
        json_t *got;
        if (rc != SAGA_OK)
            fail_msg("%s: libsaga refused it: %s", path, err.message);
        got = reply_json(&r);
        check_equal(path, got, json_object_get(expect, "ok"));
        json_decref(got);
        saga_reply_clear(&r);
    } else {
        check_error(path, json_object_get(expect, "error"), rc, &err);
    }
    free(buf);
}

static void run_encode(const char *path, json_t *v)
{
    json_t *f = json_object_get(v, "reply");
    const char *want =
        json_string_value(json_object_get(json_object_get(v, "expect"), "json"));
    saga_reply r = {0}, back;
    saga_error err = {0};
    char *text;
    size_t len;
    assert_string_equal(json_string_value(json_object_get(v, "kind")), "reply_encode");
    /* v and element: 1 and 0 when the vector leaves them out */
    r.v = json_is_integer(json_object_get(f, "v"))
              ? (int)json_integer_value(json_object_get(f, "v"))
              : SAGA_PROTOCOL_VERSION;
    r.element = (int)json_integer_value(json_object_get(f, "element"));
    snprintf(r.saga_id, sizeof r.saga_id, "%s",
             json_string_value(json_object_get(f, "saga_id")));
    r.step = (int)json_integer_value(json_object_get(f, "step"));
    assert_int_equal(
        saga_phase_parse(json_string_value(json_object_get(f, "phase")), &r.phase),
        SAGA_OK);
    r.command_id = (char *)json_string_value(json_object_get(f, "command_id"));
    r.attempt = (int)json_integer_value(json_object_get(f, "attempt"));
    assert_int_equal(saga_reply_status_parse(
                         json_string_value(json_object_get(f, "status")), &r.status),
                     SAGA_OK);
    r.output = json_is_object(json_object_get(f, "output")) ? json_object_get(f, "output")
                                                            : NULL;
    r.error_code = (char *)json_string_value(json_object_get(f, "error_code"));
    r.error_message = (char *)json_string_value(json_object_get(f, "error_message"));
    r.retry_after = json_integer_value(json_object_get(f, "retry_after"));
    assert_int_equal(saga_reply_encode(&r, &text, &len, &err), SAGA_OK);
    if (strcmp(text, want) != 0)
        fail_msg("%s: libsaga encodes\n  %s\nthe vector says\n  %s", path, text, want);
    /* And it decodes back, to its version and element. */
    assert_int_equal(saga_reply_decode(text, len, &back, &err), SAGA_OK);
    assert_int_equal(back.v, r.v);
    assert_int_equal(back.element, r.v == SAGA_PROTOCOL_VERSION_ELEMENTS ? r.element : 0);
    saga_reply_clear(&back);
    free(text);
}

static void run_signature(const char *path, json_t *v)
{
    json_t *hexes = json_object_get(v, "keys_hex"),
           *sigj = json_object_get(v, "signature");
    const char *hex[SAGA_KEYS_MAX];
    const char *topic = json_string_value(json_object_get(v, "topic"));
    const char *key = json_string_value(json_object_get(v, "message_key"));
    const char *value = json_string_value(json_object_get(v, "value"));
    const char *sig = json_string_value(sigj);
    int valid = json_is_true(json_object_get(json_object_get(v, "expect"), "valid"));
    saga_keys *k = NULL;
    saga_error err = {0};
    size_t n = json_array_size(hexes);
    int rc;
    assert_string_equal(json_string_value(json_object_get(v, "kind")), "signature");
    assert_true(n >= 1 && n <= SAGA_KEYS_MAX);
    for (size_t i = 0; i < n; i++)
        hex[i] = json_string_value(json_array_get(hexes, i));
    assert_int_equal(saga_keys_from_hex(hex, (int)n, &k, &err), SAGA_OK);
    rc = saga_verify(k, topic, key, strlen(key), value, strlen(value), sig,
                     sig != NULL ? strlen(sig) : 0, &err);
    if ((rc == SAGA_OK) != valid)
        fail_msg("%s: libsaga says %s (%s), the vector %s", path,
                 rc == SAGA_OK ? "valid" : "invalid", err.message,
                 valid ? "valid" : "invalid");
    if (valid && n == 1 && sig != NULL && strncmp(sig, "v1=", 3) == 0) {
        /* made by the only key: libsaga signs the same way (lower case) */
        char mine[SAGA_SIGNATURE_SIZE];
        assert_int_equal(
            saga_sign(k, topic, key, strlen(key), value, strlen(value), mine), SAGA_OK);
        if (strcasecmp(mine, sig) != 0)
            fail_msg("%s: libsaga signs %s, the vector has %s", path, mine, sig);
    }
    saga_keys_free(k);
}

static void test_commands(void **state)
{
    (void)state;
    assert_true(each_vector("commands", run_command) >= 60);
}

static void test_replies(void **state)
{
    (void)state;
    assert_true(each_vector("replies", run_reply) >= 20);
}

static void test_encode(void **state)
{
    (void)state;
    assert_true(each_vector("encode", run_encode) >= 8);
}

static void test_signatures(void **state)
{
    (void)state;
    assert_true(each_vector("signatures", run_signature) >= 10);
}

/* librdkafka's own partitioner function, on every key and count; and it is
 * the default a producer gets. */
static void test_partitions(void **state)
{
    json_error_t je;
    json_t *root = json_load_file(DIR_VECTORS "/partitions.json", 0, &je), *v, *parts,
           *want;
    rd_kafka_topic_conf_t *conf = rd_kafka_topic_conf_new();
    char name[64];
    size_t size = sizeof name, i;
    const char *count;
    int checked = 0;
    (void)state;
    assert_non_null(root);
    assert_int_equal(rd_kafka_topic_conf_get(conf, "partitioner", name, &size),
                     RD_KAFKA_CONF_OK);
    rd_kafka_topic_conf_destroy(conf);
    assert_string_equal(name, json_string_value(json_object_get(root, "partitioner")));
    json_array_foreach(json_object_get(root, "vectors"), i, v)
    {
        const char *key = json_string_value(json_object_get(v, "key"));
        parts = json_object_get(v, "partitions");
        json_object_foreach(parts, count, want)
        {
            int32_t n = (int32_t)atoi(count);
            int32_t got = rd_kafka_msg_partitioner_consistent_random(
                NULL, key, strlen(key), n, NULL, NULL);
            if (got != json_integer_value(want))
                fail_msg(
                    "partitions.json: key \"%s\" with %d partitions: librdkafka gives "
                    "%d, the vector %lld",
                    key, n, got, (long long)json_integer_value(want));
            checked++;
        }
    }
    assert_true(checked >= 100);
    json_decref(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_commands),   cmocka_unit_test(test_replies),
        cmocka_unit_test(test_encode),     cmocka_unit_test(test_signatures),
        cmocka_unit_test(test_partitions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
