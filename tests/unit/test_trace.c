/* W3C Trace Context: the specification's examples, malformed headers,
 * formatting round trips and id generation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "saga/saga.h"

#define TRACE  "4bf92f3577b34da6a3ce929d0e0e4736"
#define PARENT "00f067aa0ba902b7"
#define SPEC   "00-" TRACE "-" PARENT "-01"

static int parse(const char *text, saga_trace_context *ctx)
{
    return saga_traceparent_parse(text, strlen(text), ctx);
}

static void test_spec_example(void **state)
{
    saga_trace_context ctx;
    char tid[SAGA_TRACE_ID_HEX_SIZE], sid[SAGA_SPAN_ID_HEX_SIZE];
    char out[SAGA_TRACEPARENT_LEN + 1];
    (void)state;
    assert_int_equal(parse(SPEC, &ctx), SAGA_OK);
    assert_string_equal(saga_trace_id_hex(&ctx, tid), TRACE);
    assert_string_equal(saga_span_id_hex(&ctx, sid), PARENT);
    assert_int_equal(ctx.flags, SAGA_TRACE_FLAG_SAMPLED);
    assert_int_equal(ctx.trace_id[0], 0x4b);
    assert_int_equal(ctx.span_id[7], 0xb7);
    assert_int_equal(saga_traceparent_format(&ctx, out, sizeof out), SAGA_OK);
    assert_string_equal(out, SPEC);

    assert_int_equal(parse("00-" TRACE "-" PARENT "-00", &ctx), SAGA_OK);
    assert_int_equal(ctx.flags, 0);
    /* Flags other than sampled are kept as they came. */
    assert_int_equal(parse("00-" TRACE "-" PARENT "-ff", &ctx), SAGA_OK);
    assert_int_equal(ctx.flags, 0xff);
    /* Not NUL-terminated: only len bytes count. */
    assert_int_equal(saga_traceparent_parse(SPEC "trailing", SAGA_TRACEPARENT_LEN, &ctx),
                     SAGA_OK);
}

/* A later version may add fields after a '-'; the first 55 characters are
 * read as version 00 would be. */
static void test_future_version(void **state)
{
    saga_trace_context ctx;
    char out[SAGA_TRACEPARENT_LEN + 1];
    (void)state;
    assert_int_equal(
        parse("cc-" TRACE "-" PARENT "-01-what-the-future-will-be-like", &ctx), SAGA_OK);
    assert_int_equal(ctx.flags, 1);
    assert_int_equal(saga_traceparent_format(&ctx, out, sizeof out), SAGA_OK);
    assert_string_equal(out, SPEC); /* we speak 00 */
    assert_int_equal(parse("01-" TRACE "-" PARENT "-01", &ctx), SAGA_OK);
    assert_int_equal(parse("cc-" TRACE "-" PARENT "-01what", &ctx), SAGA_EPROTO);
}

static void test_malformed(void **state)
{
    static const char *const bad[] = {
        "",
        "00",
        "00-" TRACE "-" PARENT "-0",                         /* short */
        "00-" TRACE "-" PARENT "-01-",                       /* 00 is exactly 55 */
        "00-" TRACE "-" PARENT "-01 ",                       /* no trailing space */
        " 00-" TRACE "-" PARENT "-0",                        /* nor leading */
        "ff-" TRACE "-" PARENT "-01",                        /* version ff is invalid */
        "0g-" TRACE "-" PARENT "-01",                        /* version not hex */
        "00-00000000000000000000000000000000-" PARENT "-01", /* zero trace id */
        "00-" TRACE "-0000000000000000-01",                  /* zero parent id */
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-" PARENT "-01", /* uppercase */
        "00-" TRACE "-00F067AA0BA902B7-01",                  /* uppercase */
        "00-" TRACE "-" PARENT "-0A",                        /* uppercase flags */
        "00-" TRACE "-" PARENT "-0x",                        /* flags not hex */
        "00_" TRACE "-" PARENT "-01",                        /* separators */
        "00-" TRACE "_" PARENT "-01",
        "00-" TRACE "-" PARENT "_01",
        "00-4bf92f3577b34da6a3ce929d0e0e473-" PARENT "-011",       /* 31-hex trace id */
        "00-4bf92f3577b34da6a3ce929d0e0e4736a-00f067aa0ba902b-01", /* shifted */
        "00-" TRACE "-" PARENT "-01\n",
        "00-4bf92f3577b34da6a3ce929d0e0e473g-" PARENT "-01", /* non-hex */
    };
    saga_trace_context ctx;
    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&ctx, 0xaa, sizeof ctx);
        if (parse(bad[i], &ctx) != SAGA_EPROTO)
            fail_msg("accepted \"%s\"", bad[i]);
        /* Nothing half-parsed is left behind. */
        for (size_t k = 0; k < sizeof ctx.trace_id; k++)
            assert_int_equal(ctx.trace_id[k], 0);
        assert_int_equal(ctx.flags, 0);
    }
    /* A NUL inside the claimed length is not hex. */
    {
        char nul[] = SPEC;
        nul[10] = '\0';
        assert_int_equal(saga_traceparent_parse(nul, SAGA_TRACEPARENT_LEN, &ctx),
                         SAGA_EPROTO);
    }
    assert_int_equal(saga_traceparent_parse(NULL, 55, &ctx), SAGA_EINVAL);
    assert_int_equal(saga_traceparent_parse(SPEC, 55, NULL), SAGA_EINVAL);
}

static void test_format_refuses(void **state)
{
    saga_trace_context ctx = {0};
    char out[SAGA_TRACEPARENT_LEN + 1] = "x";
    (void)state;
    assert_int_equal(saga_traceparent_format(&ctx, out, sizeof out), SAGA_EINVAL);
    assert_string_equal(out, "");
    assert_int_equal(parse(SPEC, &ctx), SAGA_OK);
    assert_int_equal(saga_traceparent_format(&ctx, out, SAGA_TRACEPARENT_LEN),
                     SAGA_EINVAL);
    assert_int_equal(saga_traceparent_format(NULL, out, sizeof out), SAGA_EINVAL);
    assert_int_equal(saga_traceparent_format(&ctx, NULL, 0), SAGA_EINVAL);
}

static void test_new_and_child(void **state)
{
    saga_trace_context a, b, c;
    char text[SAGA_TRACEPARENT_LEN + 1], again[SAGA_TRACEPARENT_LEN + 1];
    (void)state;
    assert_int_equal(saga_trace_new(&a, SAGA_TRACE_FLAG_SAMPLED), SAGA_OK);
    assert_int_equal(saga_trace_new(&b, 0), SAGA_OK);
    assert_memory_not_equal(a.trace_id, b.trace_id, sizeof a.trace_id);
    assert_int_equal(a.flags, 1);
    assert_int_equal(b.flags, 0);
    /* What we make, we parse back identically. */
    assert_int_equal(saga_traceparent_format(&a, text, sizeof text), SAGA_OK);
    assert_int_equal(strlen(text), SAGA_TRACEPARENT_LEN);
    assert_int_equal(parse(text, &c), SAGA_OK);
    assert_memory_equal(&a, &c, sizeof a);
    assert_int_equal(saga_traceparent_format(&c, again, sizeof again), SAGA_OK);
    assert_string_equal(text, again);

    assert_int_equal(saga_trace_child(&a, &c), SAGA_OK);
    assert_memory_equal(c.trace_id, a.trace_id, sizeof a.trace_id);
    assert_memory_not_equal(c.span_id, a.span_id, sizeof a.span_id);
    assert_int_equal(c.flags, a.flags);
    /* In place. */
    b = a;
    assert_int_equal(saga_trace_child(&b, &b), SAGA_OK);
    assert_memory_equal(b.trace_id, a.trace_id, sizeof a.trace_id);
    assert_memory_not_equal(b.span_id, a.span_id, sizeof a.span_id);

    memset(&b, 0, sizeof b);
    assert_int_equal(saga_trace_child(&b, &c), SAGA_EINVAL);
    assert_int_equal(saga_trace_child(NULL, &c), SAGA_EINVAL);
    assert_int_equal(saga_trace_child(&a, NULL), SAGA_EINVAL);
    assert_int_equal(saga_trace_new(NULL, 0), SAGA_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec_example),  cmocka_unit_test(test_future_version),
        cmocka_unit_test(test_malformed),     cmocka_unit_test(test_format_refuses),
        cmocka_unit_test(test_new_and_child),
    };
    return cmocka_run_group_tests_name("W3C trace context", tests, NULL, NULL);
}
