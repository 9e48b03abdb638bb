/* Definitions: parsing, defaults, validation (every problem, with where),
 * durations and input templates. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "saga_definition.h"
#include "saga_duration.h"
#include "saga_template.h"

/* ---- durations ---- */

static void test_durations(void **state)
{
    static const struct {
        const char *text;
        int64_t ms;
    } good[] = {{"250ms", 250},   {"10s", 10000},         {"5m", 300000}, {"1h", 3600000},
                {"1m30s", 90000}, {"1h2m3s4ms", 3723004}, {"0s", 0}};
    static const char *const bad[] = {
        "", "10", "s", "-1s", "1d", "10 s", "1.5s", "ms", "99999999999999999999s", "5m!"};
    char buf[32];
    (void)state;
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        int64_t ms = -1;
        assert_int_equal(saga_duration_parse(good[i].text, &ms), 0);
        assert_int_equal(ms, good[i].ms);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t ms;
        if (saga_duration_parse(bad[i], &ms) == 0)
            fail_msg("\"%s\" accepted as %lld ms", bad[i], (long long)ms);
    }
    assert_int_equal(saga_duration_parse(NULL, &(int64_t){0}), -1);
    saga_duration_format(90000, buf, sizeof buf);
    assert_string_equal(buf, "1m30s");
    saga_duration_format(250, buf, sizeof buf);
    assert_string_equal(buf, "250ms");
    saga_duration_format(0, buf, sizeof buf);
    assert_string_equal(buf, "0ms");
}

/* ---- templates ---- */

static json_t *ctx(void)
{
    return json_loads("{\"input\":{\"n\":5,\"s\":\"hi\",\"o\":{\"k\":[1,2]},\"b\":true,"
                      "\"items\":[{\"sku\":\"a\"},{\"sku\":\"b\"}]},"
                      "\"steps\":{\"a\":{\"output\":{\"id\":\"X1\",\"total\":12.5}}},"
                      "\"saga\":{\"id\":\"S\",\"name\":\"order\",\"version\":2}}",
                      0, NULL);
}

static void resolves(const char *tmpl, const char *expect)
{
    json_t *c = ctx(), *t = json_loads(tmpl, JSON_DECODE_ANY, NULL), *want;
    json_t *got;
    saga_error err = {0};
    assert_non_null(t);
    got = saga_template_resolve(t, c, &err);
    if (got == NULL)
        fail_msg("%s: %s", tmpl, err.message);
    want = json_loads(expect, JSON_DECODE_ANY, NULL);
    if (!json_equal(got, want)) {
        char *g = json_dumps(got, JSON_ENCODE_ANY);
        fail_msg("%s gave %s, expected %s", tmpl, g, expect);
    }
    json_decref(got);
    json_decref(want);
    json_decref(t);
    json_decref(c);
}

static void fails(const char *tmpl, int code, const char *fragment)
{
    json_t *c = ctx(), *t = json_loads(tmpl, JSON_DECODE_ANY, NULL);
    saga_error err = {0};
    assert_null(saga_template_resolve(t, c, &err));
    assert_int_equal(err.code, code);
    if (strstr(err.message, fragment) == NULL)
        fail_msg("\"%s\" lacks \"%s\"", err.message, fragment);
    json_decref(t);
    json_decref(c);
}

static void test_template_types_and_interpolation(void **state)
{
    (void)state;
    resolves("\"${input.n}\"", "5");
    resolves("\"${input.o}\"", "{\"k\":[1,2]}");
    resolves("\"${input.o.k}\"", "[1,2]");
    resolves("\"${input.b}\"", "true");
    resolves("\"${input.items[1].sku}\"", "\"b\"");
    resolves("\"${input.o.k[0]}\"", "1");
    resolves("\"${steps.a.output.id}\"", "\"X1\"");
    resolves("\"${steps.a.output.total}\"", "12.5");
    resolves("\"n=${input.n}, s=${input.s}\"", "\"n=5, s=hi\"");
    resolves("\"k=${input.o}\"", "\"k={\\\"k\\\":[1,2]}\"");
    resolves("\"${saga.name}@${saga.version}\"", "\"order@2\"");
    resolves("\"cost $${input.n}\"", "\"cost ${input.n}\"");
    resolves("{\"a\":[\"${input.n}\",{\"b\":\"${input.s}\"}],\"c\":7}",
             "{\"a\":[5,{\"b\":\"hi\"}],\"c\":7}");
    resolves("\"plain\"", "\"plain\"");
}

static void test_template_errors(void **state)
{
    (void)state;
    fails("\"${input.missing}\"", SAGA_ENOTFOUND, "${input.missing}");
    fails("\"x ${steps.zz.output.id} y\"", SAGA_ENOTFOUND, "steps.zz.output.id");
    fails("\"${input.items[7].sku}\"", SAGA_ENOTFOUND, "input.items[7].sku");
    fails("\"${input.n.deeper}\"", SAGA_ENOTFOUND, "input.n.deeper");
    fails("\"${}\"", SAGA_EDEF, "malformed");
    fails("\"${input.}\"", SAGA_EDEF, "malformed");
    fails("\"${input[x]}\"", SAGA_EDEF, "malformed");
    fails("\"a ${input.n\"", SAGA_EDEF, "unterminated");
}

static int collect(const char *path, const char *where, void *arg)
{
    char *buf = arg;
    size_t len = strlen(buf);
    snprintf(buf + len, 512 - len, "%s=%s;", where, path ? path : "(unterminated)");
    return 0;
}

static void test_template_refs(void **state)
{
    json_t *t =
        json_loads("{\"a\":\"${input.x}\",\"b\":[\"${steps.s.output.y} ${saga.id}\"],"
                   "\"c\":\"$${not}\"}",
                   0, NULL);
    char buf[512] = "";
    (void)state;
    assert_int_equal(saga_template_refs(t, "input", collect, buf), 0);
    assert_string_equal(
        buf, "input.a=input.x;input.b[0]=steps.s.output.y;input.b[0]=saga.id;");
    json_decref(t);
}

/* ---- definitions ---- */

static saga_definition *parse_ok(const char *json)
{
    saga_definition *d = NULL;
    saga_def_problems p = {0};
    if (saga_definition_parse(json, strlen(json), &d, &p) != SAGA_OK)
        fail_msg("%s: %s", p.items[0].where, p.items[0].message);
    return d;
}

/* Parse json expecting failure; each "where|fragment" must be reported. */
static void expect_problems(const char *json, int count, const char *const *want)
{
    saga_definition *d = NULL;
    saga_def_problems p = {0};
    assert_int_equal(saga_definition_parse(json, strlen(json), &d, &p), SAGA_EDEF);
    assert_null(d);
    for (int i = 0; want[i] != NULL; i++) {
        char where[256];
        const char *bar = strchr(want[i], '|');
        int found = 0;
        snprintf(where, sizeof where, "%.*s", (int)(bar - want[i]), want[i]);
        for (int k = 0; k < p.count; k++)
            if (strcmp(p.items[k].where, where) == 0 &&
                strstr(p.items[k].message, bar + 1))
                found = 1;
        if (!found) {
            for (int k = 0; k < p.count; k++)
                print_error("  got %s: %s\n", p.items[k].where, p.items[k].message);
            fail_msg("missing problem %s", want[i]);
        }
    }
    if (count >= 0 && p.count != count) {
        for (int k = 0; k < p.count; k++)
            print_error("  got %s: %s\n", p.items[k].where, p.items[k].message);
        fail_msg("%d problems, expected %d", p.count, count);
    }
}

static void test_order_json_and_defaults(void **state)
{
    saga_definition *d = NULL;
    saga_def_problems p = {0};
    (void)state;
    assert_int_equal(saga_definition_load_file("sagas/order.json", &d, &p), SAGA_OK);
    assert_string_equal(d->name, "order");
    assert_int_equal(d->nsteps, 4);
    assert_int_equal(d->deadline_ms, 300000);
    assert_string_equal(d->steps[1].service, "payment");
    assert_string_equal(d->steps[1].compensation, "release_credit");
    assert_null(d->steps[3].compensation);
    assert_int_equal(d->steps[0].timeout_ms, 10000);
    assert_int_equal(d->steps[0].retry.max_attempts, 3);
    assert_int_equal(d->steps[0].retry.backoff_ms, 200);
    assert_int_equal(d->steps[0].retry.max_backoff_ms, 5000);
    assert_int_equal(d->steps[0].compensation_retry.max_attempts, 10);
    assert_int_equal(saga_definition_step_index(d, "reserve_stock"), 2);
    assert_int_equal(saga_definition_step_index(d, "nope"), -1);
    saga_definition_free(d);

    d = parse_ok(
        "{\"name\":\"x\",\"steps\":[{\"name\":\"a\",\"service\":\"s\",\"action\":\"a\","
        "\"timeout\":\"2s\",\"retry\":{\"max_attempts\":7}}]}");
    assert_int_equal(d->steps[0].timeout_ms, 2000);
    assert_int_equal(d->steps[0].retry.max_attempts, 7);
    assert_int_equal(d->steps[0].retry.backoff_ms, SAGA_DEFAULT_BACKOFF_MS); /* kept */
    assert_int_equal(d->steps[0].compensation_retry.max_attempts,
                     SAGA_DEFAULT_COMP_MAX_ATTEMPTS);
    saga_definition_free(d);
    assert_int_equal(saga_definition_load_file("no/such.json", &d, &p), SAGA_EIO);
}

static void test_every_problem_at_once(void **state)
{
    static const char *const want[] = {
        "$|unknown key \"stesp\"",
        "steps[0]|unknown key \"acton\"",
        "steps[0].action|missing",
        "steps[0].timeout|\"soon\" is not a positive duration",
        "steps[1].retry.max_attempts|integer from 1 to 1000",
        "steps[1].retry.jitter|from 0 to 1",
        "steps[1].service|found an integer, expected a string",
        "steps[2]|duplicate step name \"a\"",
        "steps[1].input.v|names unknown step \"zz\"",
        "steps[1].input.w|does not run before this one",
        "deadline|found an integer",
        NULL};
    (void)state;
    expect_problems(
        "{\"name\":\"x\",\"stesp\":1,\"deadline\":5,\"steps\":["
        "{\"name\":\"a\",\"service\":\"s\",\"acton\":\"a\",\"timeout\":\"soon\","
        " \"compensation\":null},"
        "{\"name\":\"b\",\"service\":7,\"action\":\"b\",\"compensation\":\"ub\","
        " \"retry\":{\"max_attempts\":0,\"jitter\":2},"
        " \"input\":{\"v\":\"${steps.zz.output.q}\",\"w\":\"${steps.c.output.q}\"}},"
        "{\"name\":\"a\",\"service\":\"s\",\"action\":\"c\"},"
        "{\"name\":\"c\",\"service\":\"s\",\"action\":\"c\"}]}",
        -1, want);
}

static void test_structural_problems(void **state)
{
    static const char *const empty[] = {"steps|empty array", NULL};
    static const char *const missing[] = {"steps|missing", "name|missing", NULL};
    static const char *const notobj[] = {"$|found an array", NULL};
    static const char *const syntax[] = {"line 1, column 11|invalid JSON", NULL};
    static const char *const badref[] = {"steps[0].input.a|must start with input", NULL};
    static const char *const badname[] = {"name|not a valid name", NULL};
    static const char *const unterminated[] = {"steps[0].input.a|unterminated", NULL};
    (void)state;
    expect_problems("{\"name\":\"x\",\"steps\":[]}", 1, empty);
    expect_problems("{}", 2, missing);
    expect_problems("[1]", 1, notobj);
    expect_problems("{\"name\":\"x\"", 1, syntax);
    expect_problems(
        "{\"name\":\"x\",\"steps\":[{\"name\":\"a\",\"service\":\"s\",\"action\":\"a\","
        "\"input\":{\"a\":\"${env.HOME}\"}}]}",
        1, badref);
    expect_problems(
        "{\"name\":\"x "
        "y\",\"steps\":[{\"name\":\"a\",\"service\":\"s\",\"action\":\"a\"}]}",
        1, badname);
    expect_problems(
        "{\"name\":\"x\",\"steps\":[{\"name\":\"a\",\"service\":\"s\",\"action\":\"a\","
        "\"input\":{\"a\":\"${input.x\"}}]}",
        1, unterminated);
}

static void test_compensation_required_where_needed(void **state)
{
    static const char *const want[] = {"steps[0]|has no compensation", NULL};
    saga_definition *d;
    (void)state;
    /* The first of two steps needs one (or an explicit null). */
    expect_problems(
        "{\"name\":\"x\",\"steps\":[{\"name\":\"a\",\"service\":\"s\",\"action\":\"a\"},"
        "{\"name\":\"b\",\"service\":\"s\",\"action\":\"b\"}]}",
        1, want);
    d = parse_ok(
        "{\"name\":\"x\",\"steps\":[{\"name\":\"a\",\"service\":\"s\",\"action\":\"a\","
        "\"compensation\":null},{\"name\":\"b\",\"service\":\"s\",\"action\":\"b\"}]}");
    assert_null(d->steps[0].compensation);
    saga_definition_free(d);
    /* The step before a pivot is undone when the pivot fails: it needs one.
     * The pivot and the steps after it never are. */
    expect_problems(
        "{\"name\":\"x\",\"steps\":[{\"name\":\"a\",\"service\":\"s\",\"action\":\"a\"},"
        "{\"name\":\"b\",\"service\":\"s\",\"action\":\"b\",\"pivot\":true},"
        "{\"name\":\"c\",\"service\":\"s\",\"action\":\"c\"}]}",
        1, want);
    d = parse_ok(
        "{\"name\":\"x\",\"steps\":[{\"name\":\"a\",\"service\":\"s\",\"action\":\"a\","
        "\"compensation\":\"ua\"},"
        "{\"name\":\"b\",\"service\":\"s\",\"action\":\"b\",\"pivot\":true},"
        "{\"name\":\"c\",\"service\":\"s\",\"action\":\"c\",\"compensation\":null}]}");
    assert_false(d->steps[0].forward_only);
    assert_true(d->steps[1].forward_only);
    assert_true(d->steps[2].forward_only);
    /* No "compensation" key: irreversible; an explicit null: nothing to undo. */
    assert_false(d->steps[0].irreversible);
    assert_true(d->steps[1].irreversible);
    assert_false(d->steps[2].irreversible);
    saga_definition_free(d);
}

static void test_groups(void **state)
{
    static const char *const split[] = {"steps[2]|group \"g\" is split", NULL};
    static const char *const same[] = {"steps[1].input.x|runs at the same time", NULL};
    static const char *const pivot[] = {"steps[1]|in group", NULL};
    static const char *const comp[] = {"steps[0]|has no compensation", NULL};
    saga_definition *d;
    (void)state;
    d = parse_ok("{\"name\":\"x\",\"steps\":["
                 "{\"name\":\"a\",\"group\":\"g\",\"service\":\"s\",\"action\":\"a\","
                 "\"compensation\":\"ua\"},"
                 "{\"name\":\"b\",\"group\":\"g\",\"service\":\"s\",\"action\":\"b\","
                 "\"compensation\":null},"
                 "{\"name\":\"c\",\"service\":\"s\",\"action\":\"c\","
                 "\"input\":{\"v\":\"${steps.a.output.x}\"}}]}");
    assert_int_equal(d->steps[0].stage_first, 0);
    assert_int_equal(d->steps[0].stage_last, 1);
    assert_int_equal(d->steps[1].stage_first, 0);
    assert_int_equal(d->steps[2].stage_first, 2);
    assert_int_equal(d->steps[2].stage_last, 2);
    assert_string_equal(d->steps[1].group, "g");
    saga_definition_free(d);
    expect_problems(
        "{\"name\":\"x\",\"steps\":["
        "{\"name\":\"a\",\"group\":\"g\",\"service\":\"s\",\"action\":\"a\","
        "\"compensation\":null},"
        "{\"name\":\"b\",\"service\":\"s\",\"action\":\"b\",\"compensation\":null},"
        "{\"name\":\"c\",\"group\":\"g\",\"service\":\"s\",\"action\":\"c\"}]}",
        1, split);
    expect_problems("{\"name\":\"x\",\"steps\":["
                    "{\"name\":\"a\",\"group\":\"g\",\"service\":\"s\",\"action\":\"a\"},"
                    "{\"name\":\"b\",\"group\":\"g\",\"service\":\"s\",\"action\":\"b\","
                    "\"input\":{\"x\":\"${steps.a.output.id}\"}}]}",
                    1, same);
    expect_problems("{\"name\":\"x\",\"steps\":["
                    "{\"name\":\"a\",\"group\":\"g\",\"service\":\"s\",\"action\":\"a\","
                    "\"compensation\":\"u\"},"
                    "{\"name\":\"b\",\"group\":\"g\",\"pivot\":true,\"service\":\"s\","
                    "\"action\":\"b\"}]}",
                    1, pivot);
    /* Members of a group that is not last need a compensation key. */
    expect_problems("{\"name\":\"x\",\"steps\":["
                    "{\"name\":\"a\",\"group\":\"g\",\"service\":\"s\",\"action\":\"a\"},"
                    "{\"name\":\"b\",\"group\":\"g\",\"service\":\"s\",\"action\":\"b\","
                    "\"compensation\":\"u\"},"
                    "{\"name\":\"c\",\"service\":\"s\",\"action\":\"c\"}]}",
                    1, comp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_template_types_and_interpolation),
        cmocka_unit_test(test_template_errors),
        cmocka_unit_test(test_template_refs),
        cmocka_unit_test(test_order_json_and_defaults),
        cmocka_unit_test(test_every_problem_at_once),
        cmocka_unit_test(test_structural_problems),
        cmocka_unit_test(test_compensation_required_where_needed),
        cmocka_unit_test(test_groups),
    };
    return cmocka_run_group_tests_name("definitions", tests, NULL, NULL);
}
