/* Trace contexts of sagas and step attempts (saga_tracing.c), and the
 * SDK's saga_command_trace(). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "saga/saga.h"
#include "saga_tracing.h"

#define CALLER "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

static void test_a_saga_continues_its_callers_trace(void **state)
{
    char tp[SAGA_TRACEPARENT_LEN + 1], again[SAGA_TRACEPARENT_LEN + 1];
    char trace[SAGA_TRACE_ID_HEX_SIZE], span[SAGA_SPAN_ID_HEX_SIZE];
    (void)state;
    assert_int_equal(saga_tracing_start(CALLER, tp, sizeof tp), SAGA_OK);
    saga_tracing_ids(tp, trace, span);
    assert_string_equal(trace, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_string_not_equal(span, "00f067aa0ba902b7"); /* a span of its own */
    assert_int_equal(strlen(span), 16);
    assert_string_equal(tp + 53, "01"); /* flags kept */
    assert_int_equal(saga_tracing_start(CALLER, again, sizeof again), SAGA_OK);
    assert_string_not_equal(tp, again); /* each saga its own span */
    /* No caller, or a bad one: a new trace, sampled. */
    assert_int_equal(saga_tracing_start(NULL, tp, sizeof tp), SAGA_OK);
    assert_int_equal(saga_tracing_start("", again, sizeof again), SAGA_OK);
    assert_int_equal(strlen(tp), SAGA_TRACEPARENT_LEN);
    assert_memory_not_equal(tp + 3, again + 3, 32);
    assert_int_equal(saga_tracing_start("00-zz", tp, sizeof tp), SAGA_OK);
    assert_int_not_equal(strncmp(tp + 3, "4bf92f", 6), 0);
    assert_int_equal(saga_tracing_start(CALLER, tp, 10), SAGA_EINVAL);
}

/* A fan-out's elements: each attempt of each its own span; no element is
 * a step's span as before. */
static void test_element_spans(void **state)
{
    char saga[SAGA_TRACEPARENT_LEN + 1], a[SAGA_TRACEPARENT_LEN + 1],
        b[SAGA_TRACEPARENT_LEN + 1], c[SAGA_TRACEPARENT_LEN + 1];
    (void)state;
    assert_int_equal(saga_tracing_start(CALLER, saga, sizeof saga), SAGA_OK);
    assert_int_equal(saga_tracing_step(saga, 2, SAGA_PHASE_INVOKE, 1, a, sizeof a),
                     SAGA_OK);
    assert_int_equal(saga_tracing_element(saga, 2, SAGA_PHASE_INVOKE, 1, -1, b, sizeof b),
                     SAGA_OK);
    assert_string_equal(a, b);
    for (int e = 0; e < 50; e++) {
        assert_int_equal(
            saga_tracing_element(saga, 2, SAGA_PHASE_INVOKE, 1, e, b, sizeof b), SAGA_OK);
        assert_int_equal(
            saga_tracing_element(saga, 2, SAGA_PHASE_INVOKE, 1, e + 1, c, sizeof c),
            SAGA_OK);
        assert_string_not_equal(a, b);
        assert_string_not_equal(b, c);
        assert_memory_equal(b, saga, 36); /* the saga's trace */
    }
}

static void test_step_spans_are_stable_and_distinct(void **state)
{
    char saga[SAGA_TRACEPARENT_LEN + 1], a[SAGA_TRACEPARENT_LEN + 1],
        b[SAGA_TRACEPARENT_LEN + 1];
    char seen[64][SAGA_SPAN_ID_HEX_SIZE];
    int n = 0;
    (void)state;
    assert_int_equal(saga_tracing_start(CALLER, saga, sizeof saga), SAGA_OK);
    /* The same attempt always has the same span: sagactl recomputes it. */
    assert_int_equal(saga_tracing_step(saga, 2, SAGA_PHASE_INVOKE, 1, a, sizeof a),
                     SAGA_OK);
    assert_int_equal(saga_tracing_step(saga, 2, SAGA_PHASE_INVOKE, 1, b, sizeof b),
                     SAGA_OK);
    assert_string_equal(a, b);
    assert_memory_equal(a, saga, 36); /* version and trace id */
    assert_string_equal(a + 53, saga + 53);
    /* Every (step, phase, attempt) its own. */
    for (int step = 0; step < 4; step++)
        for (int ph = 0; ph < 2; ph++)
            for (int att = 1; att <= 4; att++) {
                char tp[SAGA_TRACEPARENT_LEN + 1], trace[SAGA_TRACE_ID_HEX_SIZE];
                assert_int_equal(
                    saga_tracing_step(saga, step, (saga_phase)ph, att, tp, sizeof tp),
                    SAGA_OK);
                saga_tracing_ids(tp, trace, seen[n]);
                assert_string_equal(trace, "4bf92f3577b34da6a3ce929d0e0e4736");
                assert_string_not_equal(seen[n], "0000000000000000");
                for (int k = 0; k < n; k++)
                    assert_string_not_equal(seen[k], seen[n]);
                n++;
            }
    /* Another saga in the same trace: other spans. */
    {
        char other[SAGA_TRACEPARENT_LEN + 1];
        assert_int_equal(saga_tracing_start(CALLER, other, sizeof other), SAGA_OK);
        assert_int_equal(saga_tracing_step(other, 2, SAGA_PHASE_INVOKE, 1, b, sizeof b),
                         SAGA_OK);
        assert_string_not_equal(a, b);
    }
    /* A saga without context: no traceparent for its commands. */
    assert_int_equal(saga_tracing_step("", 0, SAGA_PHASE_INVOKE, 1, a, sizeof a),
                     SAGA_EINVAL);
    assert_string_equal(a, "");
    assert_int_equal(saga_tracing_step(NULL, 0, SAGA_PHASE_INVOKE, 1, a, sizeof a),
                     SAGA_EINVAL);
    {
        char trace[SAGA_TRACE_ID_HEX_SIZE], span[SAGA_SPAN_ID_HEX_SIZE];
        saga_tracing_ids("nonsense", trace, span);
        assert_string_equal(trace, "");
        assert_string_equal(span, "");
    }
}

static void test_command_trace(void **state)
{
    saga_command cmd = {0};
    saga_trace_context ctx;
    char hex[SAGA_TRACE_ID_HEX_SIZE];
    (void)state;
    assert_int_equal(saga_command_trace(&cmd, &ctx), SAGA_ENOTFOUND);
    cmd.traceparent = strdup(CALLER);
    assert_int_equal(saga_command_trace(&cmd, &ctx), SAGA_OK);
    assert_string_equal(saga_trace_id_hex(&ctx, hex), "4bf92f3577b34da6a3ce929d0e0e4736");
    free(cmd.traceparent);
    cmd.traceparent = strdup("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01");
    assert_int_equal(saga_command_trace(&cmd, &ctx), SAGA_EPROTO);
    saga_command_clear(&cmd); /* frees traceparent */
    assert_null(cmd.traceparent);
    assert_int_equal(saga_command_trace(NULL, &ctx), SAGA_EINVAL);
    assert_int_equal(saga_command_trace(&cmd, NULL), SAGA_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_saga_continues_its_callers_trace),
        cmocka_unit_test(test_step_spans_are_stable_and_distinct),
        cmocka_unit_test(test_element_spans),
        cmocka_unit_test(test_command_trace),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
