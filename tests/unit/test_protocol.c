/* Wire protocol: round trips and every way a message can be malformed;
 * version 2 (an element of a fan-out step) beside version 1. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "saga/protocol.h"

#define ID "6f1c2f7e-8a1b-4c3d-9e2f-0123456789ab"

static void test_command_round_trip(void **state)
{
    saga_command c = {0}, d;
    saga_error err = {0};
    char *text;
    size_t len;
    (void)state;
    memcpy(c.saga_id, ID, sizeof c.saga_id);
    c.saga = "order";
    c.saga_version = 3;
    c.step = 2;
    c.step_name = "reserve_stock";
    c.phase = SAGA_PHASE_COMPENSATE;
    c.action = "release_stock";
    c.command_id = ID "/2/compensate";
    c.attempt = 4;
    c.deadline = 1700000000123LL;
    c.reply_to = "saga.reply";
    c.payload = json_pack("{s:s, s:i}", "sku", "w\xc3\xa9", "n", 5);
    assert_int_equal(saga_command_encode(&c, &text, &len, &err), SAGA_OK);
    assert_int_equal(strlen(text), len);
    assert_int_equal(saga_command_decode(text, len, &d, &err), SAGA_OK);
    assert_string_equal(d.saga_id, ID);
    assert_string_equal(d.saga, "order");
    assert_int_equal(d.saga_version, 3);
    assert_int_equal(d.step, 2);
    assert_string_equal(d.step_name, "reserve_stock");
    assert_int_equal(d.phase, SAGA_PHASE_COMPENSATE);
    assert_string_equal(d.action, "release_stock");
    assert_string_equal(d.command_id, ID "/2/compensate");
    assert_int_equal(d.attempt, 4);
    assert_int_equal(d.deadline, 1700000000123LL);
    assert_string_equal(d.reply_to, "saga.reply");
    assert_true(json_equal(d.payload, c.payload));
    saga_command_clear(&d);
    saga_command_clear(&d); /* twice is safe */
    json_decref(c.payload);
    free(text);
}

static void test_reply_round_trips(void **state)
{
    for (int st = 0; st < 3; st++) {
        saga_reply r = {0}, d;
        saga_error err = {0};
        char *text;
        (void)state;
        memcpy(r.saga_id, ID, sizeof r.saga_id);
        r.step = 1;
        r.phase = SAGA_PHASE_INVOKE;
        r.command_id = ID "/1/invoke";
        r.attempt = 2;
        r.status = (saga_reply_status)st;
        if (st == SAGA_REPLY_OK) {
            r.output = json_pack("{s:[i,i]}", "ids", 1, 2);
        } else {
            r.error_code = "insufficient_credit";
            r.error_message = "only 5 left";
            r.retry_after = st == SAGA_REPLY_RETRY ? 2500 : 0;
        }
        assert_int_equal(saga_reply_encode(&r, &text, NULL, &err), SAGA_OK);
        assert_int_equal(saga_reply_decode(text, strlen(text), &d, &err), SAGA_OK);
        assert_int_equal(d.status, st);
        assert_int_equal(d.attempt, 2);
        assert_string_equal(d.command_id, ID "/1/invoke");
        if (st == SAGA_REPLY_OK) {
            assert_true(json_equal(d.output, r.output));
            assert_null(d.error_code);
        } else {
            assert_string_equal(d.error_code, "insufficient_credit");
            assert_string_equal(d.error_message, "only 5 left");
            assert_int_equal(d.retry_after, st == SAGA_REPLY_RETRY ? 2500 : 0);
        }
        saga_reply_clear(&d);
        json_decref(r.output);
        free(text);
    }
}

static const char *const good_reply =
    "{\"v\":1,\"saga_id\":\"" ID "\",\"step\":0,\"phase\":\"invoke\","
    "\"command_id\":\"" ID "/0/invoke\",\"attempt\":1,\"status\":\"ok\",\"output\":{}}";

/* Decode text as a reply and expect failure with fragment in the message. */
static void bad_reply(const char *text, size_t len, const char *fragment)
{
    saga_reply r;
    saga_error err = {0};
    int rc = saga_reply_decode(text, len, &r, &err);
    if (rc != SAGA_EPROTO)
        fail_msg("accepted (%d): %.200s", rc, text);
    if (strstr(err.message, fragment) == NULL)
        fail_msg("message \"%s\" lacks \"%s\"", err.message, fragment);
    /* A failed decode leaves nothing to free. */
    assert_null(r.command_id);
    assert_null(r.output);
}

/* good_reply with key replaced by a raw JSON value (or removed if NULL). */
static char *with(const char *key, const char *raw)
{
    json_t *o = json_loads(good_reply, 0, NULL);
    char *t;
    if (raw == NULL)
        json_object_del(o, key);
    else
        json_object_set_new(o, key, json_loads(raw, JSON_DECODE_ANY, NULL));
    t = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return t;
}

static void test_malformed_replies(void **state)
{
    static const struct {
        const char *key, *raw, *fragment;
    } cases[] = {
        {"v", NULL, "\"v\" is missing"},
        {"v", "3", "field \"v\" is 3; this side speaks 1 and 2"},
        {"v", "0", "field \"v\" is 0; this side speaks 1 and 2"},
        /* version 2 is an element's: without one it is malformed */
        {"v", "2", "field \"element\" is missing"},
        {"v", "\"1\"", "\"v\" must be an integer"},
        {"saga_id", NULL, "saga_id"},
        {"saga_id", "\"not-a-uuid\"", "not a UUID"},
        {"saga_id", "17", "saga_id"},
        {"step", NULL, "\"step\" is missing"},
        {"step", "-1", "out of range"},
        {"step", "1.5", "must be an integer"},
        {"phase", "\"undo\"", "\"phase\" must be"},
        {"command_id", NULL, "\"command_id\" is missing"},
        {"command_id", "\"\"", "must not be empty"},
        {"command_id", "[]", "must be a string"},
        {"attempt", "0", "out of range"},
        {"attempt", "-3", "out of range"},
        {"status", "\"maybe\"", "\"status\" must be"},
        {"status", NULL, "\"status\" must be"},
        {"output", "[1]", "\"output\" must be an object"},
        {"error", "\"boom\"", "\"error\" must be an object"},
        {"error", "{\"code\":5}", "in \"error\": field \"code\" must be a string"},
        {"retry_after", "-1", "out of range"},
        /* what sagad and PostgreSQL can hold: 10^16 ms is past year 294,000 */
        {"retry_after", "10000000000000000",
         "\"retry_after\" is 10000000000000000, out of range"},
        {"retry_after", "2592000001", "out of range [0, 2592000000]"},
        {"attempt", "1000001", "\"attempt\" is 1000001, out of range"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *t = with(cases[i].key, cases[i].raw);
        bad_reply(t, strlen(t), cases[i].fragment);
        free(t);
    }
    bad_reply("", 0, "not JSON");
    bad_reply("{\"v\":1,", 7, "not JSON");
    bad_reply("[1,2]", 5, "not a JSON object");
    bad_reply("\x01\x02", 2, "not JSON");
    bad_reply("{\"v\":1,\"v\":1}", 13, "not JSON");   /* duplicate keys */
    bad_reply("{\"v\":\"\\u0000\"}", 14, "not JSON"); /* NUL: C strings cannot hold it */
    {
        size_t n = SAGA_MESSAGE_MAX + 1;
        char *huge = malloc(n);
        memset(huge, ' ', n);
        bad_reply(huge, n, "exceeds");
        free(huge);
    }
}

/* The largest values in range decode; a long value is never quoted, so the
 * reason survives; a long error message is cut, not refused. */
static void test_field_ranges(void **state)
{
    saga_reply r;
    saga_error err = {0};
    char *t, *big = malloc(1000010), *huge_id;
    (void)state;
    t = with("retry_after", "2592000000");
    assert_int_equal(saga_reply_decode(t, strlen(t), &r, &err), SAGA_OK);
    assert_int_equal(r.retry_after, SAGA_RETRY_AFTER_MAX);
    saga_reply_clear(&r);
    free(t);
    /* a 1 MB code: the reason names the field and both sizes */
    big[0] = '"';
    memset(big + 1, 'x', 1000000);
    strcpy(big + 1000001, "\"");
    huge_id = malloc(1000100);
    snprintf(huge_id, 1000100, "{\"code\":%s}", big);
    t = with("error", huge_id);
    assert_int_equal(saga_reply_decode(t, strlen(t), &r, &err), SAGA_EPROTO);
    assert_non_null(
        strstr(err.message, "\"code\" is 1000000 bytes long, over the limit of 255"));
    assert_true(strlen(err.message) < 200);
    free(t);
    /* a 5,000-character saga id is quoted to 40 characters at most */
    memset(big + 1, 'a', 5000);
    strcpy(big + 5001, "\"");
    t = with("saga_id", big);
    assert_int_equal(saga_reply_decode(t, strlen(t), &r, &err), SAGA_EPROTO);
    assert_non_null(strstr(err.message, "not a UUID"));
    assert_true(strlen(err.message) < 120);
    free(t);
    /* an error message over 4 KiB is kept, cut at a character boundary */
    memset(big + 1, 'm', 4095);
    strcpy(big + 4096, "\xc3\xa9\xc3\xa9\"");
    snprintf(huge_id, 1000100, "{\"code\":\"c\",\"message\":%s}", big);
    t = with("error", huge_id);
    assert_int_equal(saga_reply_decode(t, strlen(t), &r, &err), SAGA_OK);
    assert_int_equal(strlen(r.error_message), 4095);
    saga_reply_clear(&r);
    free(t);
    free(huge_id);
    free(big);
}

static void test_reply_to_must_name_a_topic(void **state)
{
    static const char *const bad[] = {"\"bad topic!\"", "\".\"", "\"..\"", "\"a/b\"",
                                      "\"\xc3\xa9\""};
    const char *base =
        "{\"v\":1,\"saga_id\":\"" ID "\",\"saga\":\"order\",\"saga_version\":1,"
        "\"step\":0,\"step_name\":\"a\",\"phase\":\"invoke\",\"action\":\"x\","
        "\"command_id\":\"c\",\"attempt\":1,\"deadline\":%s,\"reply_to\":%s,"
        "\"payload\":{}}";
    char t[512], longname[300];
    saga_command c;
    saga_error err = {0};
    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(t, sizeof t, base, "0", bad[i]);
        assert_int_equal(saga_command_decode(t, strlen(t), &c, &err), SAGA_EPROTO);
        assert_non_null(strstr(err.message, "\"reply_to\" is not a Kafka topic name"));
    }
    longname[0] = '"';
    memset(longname + 1, 'r', 250);
    strcpy(longname + 251, "\"");
    snprintf(t, sizeof t, base, "0", longname);
    assert_int_equal(saga_command_decode(t, strlen(t), &c, &err), SAGA_EPROTO);
    assert_non_null(strstr(err.message, "over the limit of 249"));
    snprintf(t, sizeof t, base, "253402300800000", "\"saga.reply\"");
    assert_int_equal(saga_command_decode(t, strlen(t), &c, &err), SAGA_EPROTO);
    assert_non_null(strstr(err.message, "\"deadline\" is 253402300800000, out of range"));
    snprintf(t, sizeof t, base, "253402300799999", "\"saga.reply-2_x\"");
    assert_int_equal(saga_command_decode(t, strlen(t), &c, &err), SAGA_OK);
    saga_command_clear(&c);
    assert_true(saga_topic_name_valid("saga.reply"));
    assert_false(saga_topic_name_valid(""));
    assert_false(saga_topic_name_valid(NULL));
}

static void test_unknown_fields_are_ignored(void **state)
{
    char *t = with("future_field", "{\"x\":1}");
    saga_reply r;
    (void)state;
    assert_int_equal(saga_reply_decode(t, strlen(t), &r, NULL), SAGA_OK);
    saga_reply_clear(&r);
    free(t);
}

static void test_malformed_commands(void **state)
{
    const char *base =
        "{\"v\":1,\"saga_id\":\"" ID "\",\"saga\":\"order\",\"saga_version\":1,"
        "\"step\":0,\"step_name\":\"a\",\"phase\":\"invoke\",\"action\":\"x\","
        "\"command_id\":\"c\",\"attempt\":1,\"deadline\":0,\"reply_to\":\"r\","
        "\"payload\":{}}";
    static const char *const drop[] = {"saga", "step_name", "action", "reply_to",
                                       "saga_version"};
    saga_command c;
    saga_error err = {0};
    (void)state;
    assert_int_equal(saga_command_decode(base, strlen(base), &c, &err), SAGA_OK);
    saga_command_clear(&c);
    for (size_t i = 0; i < sizeof drop / sizeof drop[0]; i++) {
        json_t *o = json_loads(base, 0, NULL);
        char *t;
        json_object_del(o, drop[i]);
        t = json_dumps(o, 0);
        assert_int_equal(saga_command_decode(t, strlen(t), &c, &err), SAGA_EPROTO);
        assert_non_null(strstr(err.message, drop[i]));
        free(t);
        json_decref(o);
    }
    {
        json_t *o = json_loads(base, 0, NULL);
        char *t;
        json_object_set_new(o, "payload", json_string("nope"));
        t = json_dumps(o, 0);
        assert_int_equal(saga_command_decode(t, strlen(t), &c, &err), SAGA_EPROTO);
        assert_non_null(strstr(err.message, "payload"));
        free(t);
        json_decref(o);
    }
    assert_int_equal(saga_command_decode(NULL, 0, &c, &err), SAGA_EPROTO);
    assert_int_equal(saga_command_decode(base, strlen(base), NULL, &err), SAGA_EINVAL);
}

static void test_encode_rejects_incomplete(void **state)
{
    saga_command c = {0};
    saga_reply r = {0};
    char *t = NULL;
    (void)state;
    assert_int_equal(saga_command_encode(&c, &t, NULL, NULL), SAGA_EINVAL);
    assert_int_equal(saga_command_encode(NULL, &t, NULL, NULL), SAGA_EINVAL);
    assert_int_equal(saga_reply_encode(&r, &t, NULL, NULL), SAGA_EINVAL);
    assert_null(t);
}

static void test_names_and_command_id(void **state)
{
    char buf[128];
    saga_phase p;
    saga_reply_status s;
    (void)state;
    assert_int_equal(saga_command_id_format(buf, sizeof buf, ID, 3, SAGA_PHASE_INVOKE),
                     (int)strlen(ID "/3/invoke"));
    assert_string_equal(buf, ID "/3/invoke");
    assert_int_equal(saga_phase_parse("compensate", &p), SAGA_OK);
    assert_int_equal(p, SAGA_PHASE_COMPENSATE);
    assert_int_equal(saga_phase_parse("Invoke", &p), SAGA_EINVAL);
    assert_int_equal(saga_phase_parse(NULL, &p), SAGA_EINVAL);
    assert_int_equal(saga_reply_status_parse("retry", &s), SAGA_OK);
    assert_int_equal(s, SAGA_REPLY_RETRY);
    assert_int_equal(saga_reply_status_parse("OK", &s), SAGA_EINVAL);
    /* A failed parse leaves *out as it was; NULL out is refused, not a crash. */
    assert_int_equal(s, SAGA_REPLY_RETRY);
    assert_int_equal(p, SAGA_PHASE_COMPENSATE);
    assert_int_equal(saga_phase_parse("invoke", NULL), SAGA_EINVAL);
    assert_int_equal(saga_reply_status_parse("ok", NULL), SAGA_EINVAL);
    /* Names of values outside the enums are what the header says. */
    assert_string_equal(saga_phase_name(SAGA_PHASE_INVOKE), "invoke");
    assert_string_equal(saga_phase_name((saga_phase)7), "invoke");
    assert_string_equal(saga_reply_status_name(SAGA_REPLY_FAILED), "failed");
    assert_string_equal(saga_reply_status_name((saga_reply_status)7), "?");
    /* Measuring with a NULL buffer of size 0, and refusing what cannot be
     * formatted. */
    assert_int_equal(saga_command_id_format(NULL, 0, ID, 12, SAGA_PHASE_COMPENSATE),
                     (int)strlen(ID "/12/compensate"));
    assert_int_equal(saga_command_id_format(buf, sizeof buf, NULL, 0, SAGA_PHASE_INVOKE),
                     SAGA_EINVAL);
    assert_int_equal(saga_command_id_format(NULL, 8, ID, 0, SAGA_PHASE_INVOKE),
                     SAGA_EINVAL);
    assert_string_equal(saga_strerror(SAGA_EPROTO), "protocol error (malformed message)");
    assert_string_equal(saga_strerror(12345), "unknown error");
}

/* good_reply as version 2 with "element" set to a raw JSON value (or
 * absent if NULL). */
static char *element_reply(const char *raw)
{
    json_t *o = json_loads(good_reply, 0, NULL);
    char *t;
    json_object_set_new(o, "v", json_integer(SAGA_PROTOCOL_VERSION_ELEMENTS));
    if (raw != NULL)
        json_object_set_new(o, "element", json_loads(raw, JSON_DECODE_ANY, NULL));
    t = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return t;
}

/* A command to an element of a fan-out step: "v": 2 and its element, both
 * kept through a round trip; the exact bytes put "element" last. */
static void test_element_command_round_trip(void **state)
{
    saga_command c = {0}, d;
    saga_error err = {0};
    char *text, cid[128];
    (void)state;
    memcpy(c.saga_id, ID, sizeof c.saga_id);
    c.v = SAGA_PROTOCOL_VERSION_ELEMENTS;
    c.element = 7;
    c.saga = "notify";
    c.saga_version = 1;
    c.step = 2;
    c.step_name = "send";
    c.phase = SAGA_PHASE_INVOKE;
    c.action = "send";
    saga_command_id_format_element(cid, sizeof cid, ID, 2, SAGA_PHASE_INVOKE, 7);
    assert_string_equal(cid, ID "/2/invoke/7");
    c.command_id = cid;
    c.attempt = 1;
    c.reply_to = "saga.reply.notify";
    assert_int_equal(saga_command_encode(&c, &text, NULL, &err), SAGA_OK);
    assert_string_equal(text,
                        "{\"v\":2,\"saga_id\":\"" ID "\",\"saga\":\"notify\","
                        "\"saga_version\":1,\"step\":2,\"step_name\":\"send\","
                        "\"phase\":\"invoke\",\"action\":\"send\",\"command_id\":\"" ID
                        "/2/invoke/7\",\"attempt\":1,\"deadline\":0,"
                        "\"reply_to\":\"saga.reply.notify\",\"payload\":{},"
                        "\"element\":7}");
    assert_int_equal(saga_command_decode(text, strlen(text), &d, &err), SAGA_OK);
    assert_int_equal(d.v, SAGA_PROTOCOL_VERSION_ELEMENTS);
    assert_int_equal(d.element, 7);
    assert_string_equal(d.command_id, ID "/2/invoke/7");
    saga_command_clear(&d);
    free(text);
    /* The last element there can be, and element 0. */
    for (int i = 0; i < 2; i++) {
        c.element = i == 0 ? SAGA_ELEMENTS_MAX - 1 : 0;
        assert_int_equal(saga_command_encode(&c, &text, NULL, &err), SAGA_OK);
        assert_int_equal(saga_command_decode(text, strlen(text), &d, &err), SAGA_OK);
        assert_int_equal(d.v, 2);
        assert_int_equal(d.element, c.element);
        saga_command_clear(&d);
        free(text);
    }
    /* Out of range is refused on encode, nothing made. */
    text = NULL;
    c.element = SAGA_ELEMENTS_MAX;
    assert_int_equal(saga_command_encode(&c, &text, NULL, &err), SAGA_EINVAL);
    assert_string_equal(err.message, "element 100000 out of range [0, 99999]");
    c.element = -1;
    assert_int_equal(saga_command_encode(&c, &text, NULL, &err), SAGA_EINVAL);
    assert_null(text);
    /* Version 1 sends no element, whatever the field holds. */
    c.v = SAGA_PROTOCOL_VERSION;
    c.element = 5;
    assert_int_equal(saga_command_encode(&c, &text, NULL, &err), SAGA_OK);
    assert_null(strstr(text, "element"));
    assert_int_equal(saga_command_decode(text, strlen(text), &d, &err), SAGA_OK);
    assert_int_equal(d.v, SAGA_PROTOCOL_VERSION);
    assert_int_equal(d.element, 0);
    saga_command_clear(&d);
    free(text);
}

/* A reply to an element's command is version 2 with the element, for
 * every status; the bytes are saga_reply_encode's order. */
static void test_element_reply_round_trips(void **state)
{
    saga_reply r = {0}, d;
    saga_error err = {0};
    char *text;
    (void)state;
    memcpy(r.saga_id, ID, sizeof r.saga_id);
    r.v = SAGA_PROTOCOL_VERSION_ELEMENTS;
    r.element = 3;
    r.step = 1;
    r.phase = SAGA_PHASE_COMPENSATE;
    r.command_id = ID "/1/compensate/3";
    r.attempt = 2;
    r.status = SAGA_REPLY_OK;
    r.output = json_pack("{s:b}", "null_compensation", 1);
    assert_int_equal(saga_reply_encode(&r, &text, NULL, &err), SAGA_OK);
    assert_string_equal(text, "{\"v\":2,\"saga_id\":\"" ID "\",\"step\":1,"
                              "\"phase\":\"compensate\",\"command_id\":\"" ID
                              "/1/compensate/3\",\"attempt\":2,\"status\":\"ok\","
                              "\"element\":3,\"output\":{\"null_compensation\":true}}");
    assert_int_equal(saga_reply_decode(text, strlen(text), &d, &err), SAGA_OK);
    assert_int_equal(d.v, 2);
    assert_int_equal(d.element, 3);
    assert_true(json_equal(d.output, r.output));
    saga_reply_clear(&d);
    free(text);
    json_decref(r.output);
    r.output = NULL;
    r.status = SAGA_REPLY_RETRY;
    r.error_code = "retry";
    r.error_message = "busy";
    r.retry_after = 100;
    r.element = 0;
    assert_int_equal(saga_reply_encode(&r, &text, NULL, &err), SAGA_OK);
    assert_non_null(strstr(text, "\"status\":\"retry\",\"element\":0,\"error\":"));
    assert_int_equal(saga_reply_decode(text, strlen(text), &d, &err), SAGA_OK);
    assert_int_equal(d.v, 2);
    assert_int_equal(d.element, 0);
    assert_int_equal(d.retry_after, 100);
    saga_reply_clear(&d);
    free(text);
    r.element = SAGA_ELEMENTS_MAX;
    assert_int_equal(saga_reply_encode(&r, &text, NULL, &err), SAGA_EINVAL);
    assert_non_null(strstr(err.message, "out of range [0, 99999]"));
}

/* What a decoder refuses of version 2, and what version 1 ignores. */
static void test_element_field(void **state)
{
    static const struct {
        const char *raw, *message;
    } bad[] = {
        {NULL, "field \"element\" is missing"},
        {"null", "field \"element\" is missing"},
        {"-1", "field \"element\" is -1, out of range [0, 99999]"},
        {"100000", "field \"element\" is 100000, out of range [0, 99999]"},
        {"\"1\"", "field \"element\" must be an integer"},
        {"1.0", "field \"element\" must be an integer"},
        {"true", "field \"element\" must be an integer"},
    };
    saga_reply r;
    saga_command c;
    saga_error err = {0};
    char *t;
    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        t = element_reply(bad[i].raw);
        assert_int_equal(saga_reply_decode(t, strlen(t), &r, &err), SAGA_EPROTO);
        assert_string_equal(err.message, bad[i].message);
        free(t);
    }
    t = element_reply("99999");
    assert_int_equal(saga_reply_decode(t, strlen(t), &r, &err), SAGA_OK);
    assert_int_equal(r.element, 99999);
    saga_reply_clear(&r);
    free(t);
    /* Version 1: "element" is an unknown field, whatever it holds. */
    t = with("element", "\"not a number\"");
    assert_int_equal(saga_reply_decode(t, strlen(t), &r, &err), SAGA_OK);
    assert_int_equal(r.v, 1);
    assert_int_equal(r.element, 0);
    saga_reply_clear(&r);
    free(t);
    t = with("element", "4");
    assert_int_equal(saga_reply_decode(t, strlen(t), &r, &err), SAGA_OK);
    assert_int_equal(r.element, 0);
    saga_reply_clear(&r);
    free(t);
    {
        const char *cmd =
            "{\"v\":2,\"saga_id\":\"" ID "\",\"saga\":\"order\",\"saga_version\":1,"
            "\"step\":0,\"step_name\":\"a\",\"phase\":\"invoke\",\"action\":\"x\","
            "\"command_id\":\"c\",\"attempt\":1,\"reply_to\":\"r\"}";
        assert_int_equal(saga_command_decode(cmd, strlen(cmd), &c, &err), SAGA_EPROTO);
        assert_string_equal(err.message, "field \"element\" is missing");
    }
    /* The element's command id; a negative element gives the step's. */
    {
        char buf[128];
        assert_int_equal(saga_command_id_format_element(buf, sizeof buf, ID, 0,
                                                        SAGA_PHASE_COMPENSATE, 99999),
                         (int)strlen(ID "/0/compensate/99999"));
        assert_string_equal(buf, ID "/0/compensate/99999");
        saga_command_id_format_element(buf, sizeof buf, ID, 4, SAGA_PHASE_INVOKE, -1);
        assert_string_equal(buf, ID "/4/invoke");
        assert_int_equal(
            saga_command_id_format_element(NULL, 0, ID, 4, SAGA_PHASE_INVOKE, 12),
            (int)strlen(ID "/4/invoke/12"));
        assert_int_equal(saga_command_id_format_element(buf, sizeof buf, NULL, 4,
                                                        SAGA_PHASE_INVOKE, 12),
                         SAGA_EINVAL);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_command_round_trip),
        cmocka_unit_test(test_reply_round_trips),
        cmocka_unit_test(test_malformed_replies),
        cmocka_unit_test(test_unknown_fields_are_ignored),
        cmocka_unit_test(test_field_ranges),
        cmocka_unit_test(test_reply_to_must_name_a_topic),
        cmocka_unit_test(test_malformed_commands),
        cmocka_unit_test(test_encode_rejects_incomplete),
        cmocka_unit_test(test_names_and_command_id),
        cmocka_unit_test(test_element_command_round_trip),
        cmocka_unit_test(test_element_reply_round_trips),
        cmocka_unit_test(test_element_field),
    };
    return cmocka_run_group_tests_name("protocol", tests, NULL, NULL);
}
