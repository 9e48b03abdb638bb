/* The C builder yields the same JSON as the definition files: the order
 * saga declared in code equals sagas/order.json, and every definition file
 * in the repository survives JSON -> builder -> JSON unchanged
 * (tests/data/every_key.json uses every key the builder writes, so each
 * setter is checked against the file format). */
#include <glob.h>
#include <math.h>
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
        json_t *wait = json_object_get(step, "wait"),
               *child = json_object_get(step, "child");
        saga_def_step *s =
            child != NULL
                ? saga_def_add_child(d, json_string_value(json_object_get(step, "name")),
                                     json_string_value(child))
            : wait != NULL
                ? saga_def_add_wait(d, json_string_value(json_object_get(step, "name")),
                                    json_string_value(json_object_get(wait, "signal")),
                                    json_string_value(json_object_get(wait, "timeout")),
                                    json_deep_copy(json_object_get(wait, "default")))
                : saga_def_add_step(d, json_string_value(json_object_get(step, "name")),
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
        if ((v = json_object_get(step, "when")) != NULL)
            saga_def_step_when(s, json_string_value(v));
        if ((v = json_object_get(step, "for_each")) != NULL)
            saga_def_step_for_each(
                s, json_string_value(v),
                (int)json_integer_value(json_object_get(step, "concurrency")),
                (int)json_integer_value(json_object_get(step, "max_elements")));
    }
    return d;
}

/* Every key that the builder can write, at the top, in defaults, in a step
 * and in a retry policy; "compensation" is counted as string and as null. */
static const char *const builder_keys[] = {"$.name",
                                           "$.description",
                                           "$.deadline",
                                           "$.steps",
                                           "defaults.timeout",
                                           "defaults.retry",
                                           "defaults.compensation_retry",
                                           "step.name",
                                           "step.service",
                                           "step.action",
                                           "step.compensation:string",
                                           "step.compensation:null",
                                           "step.input",
                                           "step.timeout",
                                           "step.retry",
                                           "step.compensation_retry",
                                           "step.pivot:true",
                                           "step.pivot:false",
                                           "step.description",
                                           "step.group",
                                           "step.when",
                                           "step.wait",
                                           "step.for_each",
                                           "step.concurrency",
                                           "step.max_elements",
                                           "step.child",
                                           "retry.max_attempts",
                                           "retry.backoff",
                                           "retry.max_backoff",
                                           "retry.multiplier:integer",
                                           "retry.multiplier:real",
                                           "retry.jitter:integer",
                                           "retry.jitter:real",
                                           NULL};

static void seen(int *used, const char *key)
{
    for (int i = 0; builder_keys[i] != NULL; i++)
        if (strcmp(builder_keys[i], key) == 0)
            used[i] = 1;
}

static void seen_retry(int *used, json_t *r)
{
    const char *k;
    json_t *v;
    json_object_foreach(r, k, v)
    {
        char key[64];
        int kind = strcmp(k, "multiplier") == 0 || strcmp(k, "jitter") == 0;
        snprintf(key, sizeof key, "retry.%s%s", k,
                 !kind                ? ""
                 : json_is_integer(v) ? ":integer"
                                      : ":real");
        seen(used, key);
    }
}

static void seen_keys(int *used, json_t *file)
{
    const char *k;
    json_t *v, *step;
    size_t i;
    json_object_foreach(file, k, v)
    {
        char key[64];
        snprintf(key, sizeof key, "$.%s", k);
        seen(used, key);
    }
    json_object_foreach(json_object_get(file, "defaults"), k, v)
    {
        char key[64];
        snprintf(key, sizeof key, "defaults.%s", k);
        seen(used, key);
        if (json_is_object(v))
            seen_retry(used, v);
    }
    json_array_foreach(json_object_get(file, "steps"), i, step)
    {
        json_object_foreach(step, k, v)
        {
            char key[64];
            const char *kind = "";
            if (strcmp(k, "compensation") == 0)
                kind = json_is_null(v) ? ":null" : ":string";
            else if (strcmp(k, "pivot") == 0)
                kind = json_is_true(v) ? ":true" : ":false";
            snprintf(key, sizeof key, "step.%s%s", k, kind);
            seen(used, key);
            if (strcmp(k, "retry") == 0 || strcmp(k, "compensation_retry") == 0)
                seen_retry(used, v);
        }
    }
}

static void test_every_file_round_trips(void **state)
{
    static const char *const patterns[] = {"sagas/*.json", "tests/integration/*/*.json",
                                           "examples/hello/*.json",
                                           "tests/interop/*.json", "tests/data/*.json"};
    int files = 0, used[sizeof builder_keys / sizeof builder_keys[0]] = {0};
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
            if (!json_equal(built, file)) {
                char *a = json_dumps(built, JSON_SORT_KEYS),
                     *b = json_dumps(file, JSON_SORT_KEYS);
                fail_msg("%s does not survive the builder:\nbuilt: %s\nfile:  %s",
                         g.gl_pathv[i], a, b);
            }
            /* And what the builder makes is a valid definition. */
            if (saga_definition_from_json(built, &parsed, &probs) != SAGA_OK)
                fail_msg("%s: %s: %s", g.gl_pathv[i], probs.items[0].where,
                         probs.items[0].message);
            seen_keys(used, file);
            saga_definition_free(parsed);
            json_decref(built);
            json_decref(file);
            saga_def_free(d);
            files++;
        }
        globfree(&g);
    }
    assert_true(files >= 7);
    for (int i = 0; builder_keys[i] != NULL; i++)
        if (!used[i])
            fail_msg("no definition file uses %s: that setter is not checked against "
                     "the file format (add it to tests/data/every_key.json)",
                     builder_keys[i]);
    print_message("%d definition files round-tripped\n", files);
}

/* An allocator that fails on demand, to reach the builder's SAGA_ENOMEM. */
static int fail_allocs;

static void *failing_malloc(size_t n)
{
    return fail_allocs ? NULL : malloc(n);
}

static void test_builder_errors(void **state)
{
    saga_def *d = saga_def_new("x");
    saga_retry_spec r = SAGA_RETRY_SPEC_INIT;
    saga_def_step *s;
    json_t *j, *pol;
    (void)state;
    assert_non_null(d);
    /* Arguments are checked before anything is written: a refused call
     * leaves no empty "defaults" behind. */
    assert_int_equal(saga_def_default_timeout(d, ""), SAGA_EINVAL);
    assert_int_equal(saga_def_default_timeout(d, "\xff"), SAGA_EINVAL); /* not UTF-8 */
    assert_int_equal(saga_def_default_compensation_retry(d, NULL), SAGA_EINVAL);
    r.multiplier = NAN;
    assert_int_equal(saga_def_default_retry(d, &r), SAGA_EINVAL);
    r.multiplier = 0;
    r.jitter = INFINITY;
    assert_int_equal(saga_def_default_retry(d, &r), SAGA_EINVAL);
    r.jitter = -1;
    r.backoff = "\xc3\x28"; /* an invalid UTF-8 sequence */
    assert_int_equal(saga_def_default_retry(d, &r), SAGA_EINVAL);
    j = saga_def_to_json(d);
    assert_null(json_object_get(j, "defaults"));
    json_decref(j);

    /* Out of memory is SAGA_ENOMEM, not SAGA_EINVAL: creating "defaults"
     * is the first allocation of these setters. */
    s = saga_def_add_step(d, "a", "svc", "act");
    json_set_alloc_funcs(failing_malloc, free);
    fail_allocs = 1;
    assert_int_equal(saga_def_default_timeout(d, "1s"), SAGA_ENOMEM);
    assert_int_equal(saga_def_default_retry(d, &(saga_retry_spec)SAGA_RETRY_SPEC_INIT),
                     SAGA_ENOMEM);
    assert_int_equal(saga_def_step_timeout(s, "1s"), SAGA_ENOMEM);
    assert_int_equal(saga_def_step_compensation(s, "undo"), SAGA_ENOMEM);
    fail_allocs = 0;
    json_set_alloc_funcs(malloc, free);

    /* Whole numbers become integers only where a double holds them exactly;
     * larger ones stay reals (casting them would be undefined). */
    r = (saga_retry_spec)SAGA_RETRY_SPEC_INIT;
    r.multiplier = 1e300;
    r.jitter = 0.25;
    assert_int_equal(saga_def_step_retry(s, &r), SAGA_OK);
    r.multiplier = 9007199254740992.0; /* 2^53 */
    r.jitter = 1;
    assert_int_equal(saga_def_step_compensation_retry(s, &r), SAGA_OK);
    j = saga_def_to_json(d);
    pol = json_object_get(json_array_get(json_object_get(j, "steps"), 0), "retry");
    assert_true(json_is_real(json_object_get(pol, "multiplier")));
    assert_true(json_real_value(json_object_get(pol, "multiplier")) == 1e300);
    assert_true(json_is_real(json_object_get(pol, "jitter")));
    pol = json_object_get(json_array_get(json_object_get(j, "steps"), 0),
                          "compensation_retry");
    assert_int_equal(json_integer_value(json_object_get(pol, "multiplier")),
                     9007199254740992LL);
    assert_true(json_is_integer(json_object_get(pol, "jitter")));
    json_decref(j);
    assert_int_equal(saga_def_step_retry(s, NULL), SAGA_EINVAL);
    assert_int_equal(saga_def_step_group(s, ""), SAGA_EINVAL);
    assert_null(saga_def_add_step(d, "\xff", "svc", "act"));
    saga_def_free(d);
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
        cmocka_unit_test(test_builder_errors),
    };
    return cmocka_run_group_tests_name("definition builder", tests, NULL, NULL);
}
