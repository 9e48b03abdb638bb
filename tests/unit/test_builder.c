/* The C builder yields the same JSON as the definition files: the order
 * saga declared in code equals sagas/order.json, and every definition file
 * in the repository survives JSON -> builder -> JSON unchanged. */
#include <glob.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "saga/saga.h"
#include "saga_definition.h"

static void test_order_saga_in_code(void **state)
{
    saga_def *d = saga_def_new("order");
    saga_retry_spec retry = SAGA_RETRY_SPEC_INIT, comp = SAGA_RETRY_SPEC_INIT;
    saga_def_step *s;
    json_t *built, *file;
    (void)state;
    assert_non_null(d);
    saga_def_description(d, "Place an order: create it, reserve the customer's credit, "
                            "reserve stock, approve it.");
    saga_def_deadline(d, "5m");
    saga_def_default_timeout(d, "10s");
    retry.max_attempts = 3;
    retry.backoff = "200ms";
    retry.max_backoff = "5s";
    retry.multiplier = 2;
    retry.jitter = 0.2;
    saga_def_default_retry(d, &retry);
    comp.max_attempts = 10;
    comp.backoff = "500ms";
    comp.max_backoff = "30s";
    saga_def_default_compensation_retry(d, &comp);

    s = saga_def_add_step(d, "create_order", "order", "create_order");
    saga_def_step_compensation(s, "cancel_order");
    saga_def_step_input(s, json_pack("{s:s, s:s, s:s, s:s}", "customer_id",
                                     "${input.customer_id}", "sku", "${input.sku}",
                                     "quantity", "${input.quantity}", "amount",
                                     "${input.amount}"));
    s = saga_def_add_step(d, "reserve_credit", "payment", "reserve_credit");
    saga_def_step_compensation(s, "release_credit");
    saga_def_step_input(s,
                        json_pack("{s:s, s:s, s:s}", "customer_id",
                                  "${input.customer_id}", "amount", "${input.amount}",
                                  "order_id", "${steps.create_order.output.order_id}"));
    s = saga_def_add_step(d, "reserve_stock", "inventory", "reserve_stock");
    saga_def_step_compensation(s, "release_stock");
    saga_def_step_input(s, json_pack("{s:s, s:s, s:s}", "sku", "${input.sku}", "quantity",
                                     "${input.quantity}", "order_id",
                                     "${steps.create_order.output.order_id}"));
    s = saga_def_add_step(d, "approve_order", "order", "approve_order");
    saga_def_step_input(
        s, json_pack("{s:s}", "order_id", "${steps.create_order.output.order_id}"));

    built = saga_def_to_json(d);
    file = json_load_file("sagas/order.json", 0, NULL);
    assert_non_null(file);
    if (!json_equal(built, file)) {
        char *a = json_dumps(built, JSON_SORT_KEYS),
             *b = json_dumps(file, JSON_SORT_KEYS);
        fail_msg("built:\n%s\nfile:\n%s", a, b);
    }
    json_decref(built);
    json_decref(file);
    saga_def_free(d);
}

static void retry_from(json_t *o, saga_retry_spec *r)
{
    json_t *v;
    *r = (saga_retry_spec)SAGA_RETRY_SPEC_INIT;
    if ((v = json_object_get(o, "max_attempts")) != NULL)
        r->max_attempts = (int)json_integer_value(v);
    r->backoff = json_string_value(json_object_get(o, "backoff"));
    r->max_backoff = json_string_value(json_object_get(o, "max_backoff"));
    if ((v = json_object_get(o, "multiplier")) != NULL)
        r->multiplier = json_number_value(v);
    if ((v = json_object_get(o, "jitter")) != NULL)
        r->jitter = json_number_value(v);
}

/* Declare, through the builder, what a definition file says. */
static saga_def *rebuild(json_t *j)
{
    saga_def *d = saga_def_new(json_string_value(json_object_get(j, "name")));
    json_t *v, *defaults = json_object_get(j, "defaults"), *step;
    saga_retry_spec r;
    size_t i;
    if ((v = json_object_get(j, "description")) != NULL)
        saga_def_description(d, json_string_value(v));
    if ((v = json_object_get(j, "deadline")) != NULL)
        saga_def_deadline(d, json_string_value(v));
    if ((v = json_object_get(defaults, "timeout")) != NULL)
        saga_def_default_timeout(d, json_string_value(v));
    if ((v = json_object_get(defaults, "retry")) != NULL) {
        retry_from(v, &r);
        saga_def_default_retry(d, &r);
    }
    if ((v = json_object_get(defaults, "compensation_retry")) != NULL) {
        retry_from(v, &r);
        saga_def_default_compensation_retry(d, &r);
    }
    json_array_foreach(json_object_get(j, "steps"), i, step)
    {
        saga_def_step *s =
            saga_def_add_step(d, json_string_value(json_object_get(step, "name")),
                              json_string_value(json_object_get(step, "service")),
                              json_string_value(json_object_get(step, "action")));
        assert_non_null(s);
        if ((v = json_object_get(step, "compensation")) != NULL)
            saga_def_step_compensation(s, json_string_value(v)); /* NULL for null */
        if ((v = json_object_get(step, "input")) != NULL)
            saga_def_step_input(s, json_deep_copy(v));
        if ((v = json_object_get(step, "timeout")) != NULL)
            saga_def_step_timeout(s, json_string_value(v));
        if ((v = json_object_get(step, "retry")) != NULL) {
            retry_from(v, &r);
            saga_def_step_retry(s, &r);
        }
        if ((v = json_object_get(step, "compensation_retry")) != NULL) {
            retry_from(v, &r);
            saga_def_step_compensation_retry(s, &r);
        }
        if ((v = json_object_get(step, "description")) != NULL)
            saga_def_step_description(s, json_string_value(v));
        if ((v = json_object_get(step, "pivot")) != NULL)
            saga_def_step_pivot(s, json_is_true(v));
        if ((v = json_object_get(step, "group")) != NULL)
            saga_def_step_group(s, json_string_value(v));
    }
    return d;
}

static void test_every_file_round_trips(void **state)
{
    static const char *const patterns[] = {"sagas/*.json", "tests/integration/*/*.json",
                                           "examples/hello/*.json",
                                           "tests/interop/*.json"};
    int files = 0;
    (void)state;
    for (size_t p = 0; p < sizeof patterns / sizeof patterns[0]; p++) {
        glob_t g;
        if (glob(patterns[p], 0, NULL, &g) != 0)
            continue;
        for (size_t i = 0; i < g.gl_pathc; i++) {
            json_t *file = json_load_file(g.gl_pathv[i], 0, NULL), *built;
            saga_def *d;
            saga_definition *parsed = NULL;
            saga_def_problems probs = {0};
            assert_non_null(file);
            d = rebuild(file);
            built = saga_def_to_json(d);
            if (!json_equal(built, file))
                fail_msg("%s does not survive the builder", g.gl_pathv[i]);
            /* And what the builder makes is a valid definition. */
            assert_int_equal(saga_definition_from_json(built, &parsed, &probs), SAGA_OK);
            saga_definition_free(parsed);
            json_decref(built);
            json_decref(file);
            saga_def_free(d);
            files++;
        }
        globfree(&g);
    }
    assert_true(files >= 6);
    print_message("%d definition files round-tripped\n", files);
}

static void test_builder_misuse_and_file(void **state)
{
    saga_def *d = saga_def_new("x");
    saga_def_step *s;
    saga_error err = {0};
    json_t *back;
    /* A scratch file of our own: the build tree's layout is not ours to assume. */
    char path[] = "/tmp/saga-builder-XXXXXX";
    int fd = mkstemp(path);
    (void)state;
    assert_true(fd >= 0);
    close(fd);
    assert_null(saga_def_new(NULL));
    assert_null(saga_def_new(""));
    assert_null(saga_def_add_step(d, "a", NULL, "act"));
    assert_null(saga_def_add_step(NULL, "a", "s", "act"));
    assert_int_equal(saga_def_deadline(d, ""), SAGA_EINVAL);
    assert_int_equal(saga_def_default_retry(d, NULL), SAGA_EINVAL);
    s = saga_def_add_step(d, "a", "svc", "act");
    assert_int_equal(saga_def_step_input(s, json_array()),
                     SAGA_EINVAL); /* stolen anyway */
    assert_int_equal(saga_def_step_compensation(s, ""), SAGA_EINVAL);
    assert_int_equal(saga_def_step_compensation(s, NULL), SAGA_OK); /* nothing to undo */
    assert_int_equal(saga_def_step_pivot(NULL, 1), SAGA_EINVAL);
    assert_int_equal(saga_def_write_file(d, path, &err), SAGA_OK);
    back = json_load_file(path, 0, NULL);
    unlink(path);
    assert_non_null(back);
    assert_true(json_is_null(json_object_get(
        json_array_get(json_object_get(back, "steps"), 0), "compensation")));
    json_decref(back);
    assert_int_equal(saga_def_write_file(d, "/nonexistent/dir/x.json", &err), SAGA_EIO);
    assert_null(saga_def_to_json(NULL));
    saga_def_free(d);
    saga_def_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_saga_in_code),
        cmocka_unit_test(test_every_file_round_trips),
        cmocka_unit_test(test_builder_misuse_and_file),
    };
    return cmocka_run_group_tests_name("definition builder", tests, NULL, NULL);
}
