/* Definitions: parsing, defaults, validation (every problem, with where),
 * durations and input templates. */
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

static int collect(const char *path, size_t plen, const char *where, void *arg)
{
    char *buf = arg;
    size_t len = strlen(buf);
    if (path != NULL)
        snprintf(buf + len, 512 - len, "%s=%.*s;", where, (int)plen, path);
    else
        snprintf(buf + len, 512 - len, "%s=(unterminated);", where);
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

    /* An unterminated "${" is reported and the walk goes on. */
    t = json_loads(
        "{\"a\":\"${input.x\",\"b\":[\"${input.y} ${input.z\",\"${input.w}\"]}", 0, NULL);
    buf[0] = '\0';
    assert_int_equal(saga_template_refs(t, "input", collect, buf), -1);
    assert_string_equal(buf, "input.a=(unterminated);input.b[0]=input.y;input.b[0]=("
                             "unterminated);input.b[1]=input.w;");
    json_decref(t);
}

/* The validator and the resolver share one parser: a path is malformed
 * for both or for neither, and both say the same about it. */
static void test_ref_parser_shared(void **state)
{
    static const char *const paths[] = {"input",
                                        "input.a",
                                        "input.items[0].sku",
                                        "input[0][1]",
                                        "steps.a.output",
                                        "saga.id",
                                        "input.a-b_c",
                                        "",
                                        "input.",
                                        "input..y",
                                        "input[x]",
                                        "input.[0]",
                                        "input[1",
                                        "input]",
                                        "input[0]x",
                                        ".input",
                                        "[0]",
                                        " input.x ",
                                        "input.a${input.b",
                                        "input[99999999999]",
                                        "input.\tx"};
    json_t *c = ctx();
    (void)state;
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        char why[160] = "", tmpl[64];
        saga_error err = {0};
        json_t *t, *out;
        int n =
            saga_template_parse_ref(paths[i], strlen(paths[i]), NULL, 0, why, sizeof why);
        snprintf(tmpl, sizeof tmpl, "${%s}", paths[i]);
        t = json_string(tmpl);
        out = saga_template_resolve(t, c, &err);
        if (n < 0) {
            assert_null(out);
            assert_int_equal(err.code, SAGA_EDEF);
            if (strstr(err.message, why) == NULL)
                fail_msg("%s: resolver says \"%s\", parser says \"%s\"", tmpl,
                         err.message, why);
        } else if (out == NULL && err.code == SAGA_EDEF) {
            fail_msg("%s parses but the resolver calls it malformed: %s", tmpl,
                     err.message);
        }
        json_decref(out);
        json_decref(t);
    }
    json_decref(c);
    {
        saga_ref_seg seg[4];
        char why[160];
        assert_int_equal(
            saga_template_parse_ref("steps.a.output[12].x", 20, seg, 4, why, sizeof why),
            5);
        assert_int_equal(seg[1].key_len, 1);
        assert_memory_equal(seg[1].key, "a", 1);
        assert_null(seg[3].key);
        assert_int_equal(seg[3].index, 12);
    }
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
    static const char *const comp[] = {"steps[0]|is in parallel group \"g\" but has no "
                                       "compensation",
                                       NULL};
    static const char *const last[] = {"steps[2]|is in parallel group \"g\" but has no "
                                       "compensation",
                                       NULL};
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
                    "{\"name\":\"a\",\"group\":\"g\",\"service\":\"s\",\"action\":\"a\","
                    "\"compensation\":null},"
                    "{\"name\":\"b\",\"group\":\"g\",\"service\":\"s\",\"action\":\"b\","
                    "\"compensation\":null,\"input\":{\"x\":\"${steps.a.output.id}\"}}]}",
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
    /* ... and so do the members of the last group: one can be given up
     * while in flight when another fails. */
    expect_problems(
        "{\"name\":\"x\",\"steps\":["
        "{\"name\":\"a\",\"service\":\"s\",\"action\":\"a\","
        "\"compensation\":\"u\"},"
        "{\"name\":\"b\",\"group\":\"g\",\"service\":\"s\",\"action\":\"b\","
        "\"compensation\":null},"
        "{\"name\":\"c\",\"group\":\"g\",\"service\":\"s\",\"action\":\"c\"}]}",
        1, last);
}

/* Read a whole small file; NULL if it cannot be read. */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;
    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    rewind(f);
    buf = calloc(1, (size_t)n + 1);
    if (buf != NULL && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    return buf;
}

static const saga_definition *only_itself(const char *name, void *arg)
{
    const saga_definition *d = arg;
    return strcmp(d->name, name) == 0 ? d : NULL;
}

/* Each tests/data/invalid/NAME.json gives exactly the problems, in order,
 * that NAME.expected lists ("where: message" a line). Together they cover
 * every message the validator has (test_cli_validation.sh checks the same
 * files through sagactl validate). */
static void test_every_message_exactly(void **state)
{
    glob_t g;
    int files = 0;
    (void)state;
    assert_int_equal(glob("tests/data/invalid/*.json", 0, NULL, &g), 0);
    for (size_t i = 0; i < g.gl_pathc; i++) {
        char exp_path[512], got[16384] = "", *want;
        saga_definition *d = NULL;
        saga_def_problems p = {0};
        size_t len = 0;
        snprintf(exp_path, sizeof exp_path, "%.*s.expected",
                 (int)(strlen(g.gl_pathv[i]) - 5), g.gl_pathv[i]);
        want = slurp(exp_path);
        if (want == NULL)
            fail_msg("%s has no %s", g.gl_pathv[i], exp_path);
        /* A file alone, as sagactl validate sees it: its children are
         * looked for among itself (child_*.json). */
        if (saga_definition_load_file(g.gl_pathv[i], &d, &p) == SAGA_OK) {
            assert_int_equal(saga_definition_check_children(d, only_itself, d, &p),
                             SAGA_EDEF);
            saga_definition_free(d);
            d = NULL;
        }
        assert_null(d);
        for (int k = 0; k < p.count && k < 64; k++)
            len += (size_t)snprintf(got + len, sizeof got - len, "%s: %s\n",
                                    p.items[k].where, p.items[k].message);
        if (strcmp(got, want) != 0)
            fail_msg("%s:\n--- got\n%s--- expected (%s)\n%s", g.gl_pathv[i], got,
                     exp_path, want);
        free(want);
        files++;
    }
    globfree(&g);
    assert_true(files >= 30);
    print_message("%d invalid definitions gave exactly the expected problems\n", files);
}

/* The two messages no data file can carry. */
/* A stored definition was valid under the rules of the release that
 * deployed it: loading it back applies only what the engine needs, so
 * sagas already running on it are never stranded by a stricter validator. */
static void test_stored_definitions_load_under_the_engine_rules(void **state)
{
    /* Each breaks a rule added later, none breaks what the engine needs. */
    static const char *const authoring_only =
        "{\"name\":\"old\",\"$schema\":5,\"steps\":["
        "{\"name\":\"a.b\",\"service\":\"s\",\"action\":\"a\",\"group\":\"solo\","
        "\"compensation\":\"ua\",\"input\":{\"x\":\"${input.}\"}},"
        "{\"name\":\"g1\",\"service\":\"s\",\"action\":\"g\",\"group\":\"g\"},"
        "{\"name\":\"g2\",\"service\":\"s\",\"action\":\"g\",\"group\":\"g\","
        "\"compensation\":\"ug\"},"
        "{\"name\":\"p\",\"service\":\"s\",\"action\":\"p\",\"pivot\":true,"
        "\"compensation\":\"up\"},"
        "{\"name\":\"q\",\"service\":\"s\",\"action\":\"q\",\"pivot\":true}]}";
    static const char *const broken = "{\"name\":\"old\",\"steps\":["
                                      "{\"name\":\"a\",\"action\":\"a\"}]}";
    saga_def_problems probs = {0}, stored = {.stored = 1};
    saga_definition *def = NULL;
    (void)state;

    assert_int_equal(
        saga_definition_parse(authoring_only, strlen(authoring_only), &def, &probs),
        SAGA_EDEF);
    assert_true(probs.count >= 6);
    assert_int_equal(
        saga_definition_parse(authoring_only, strlen(authoring_only), &def, &stored),
        SAGA_OK);
    assert_int_equal(stored.count, 0);
    assert_int_equal(def->nsteps, 5);
    assert_true(def->steps[3].pivot && def->steps[4].forward_only);
    assert_int_equal(def->steps[1].stage_last, 2);
    saga_definition_free(def);
    def = NULL;
    /* What the engine cannot run stays an error. */
    memset(&stored, 0, sizeof stored);
    stored.stored = 1;
    assert_int_equal(saga_definition_parse(broken, strlen(broken), &def, &stored),
                     SAGA_EDEF);
    assert_null(def);
    assert_true(stored.count >= 1);
}

static void test_too_many_steps_and_no_file(void **state)
{
    json_t *body = json_pack("{s:s, s:[]}", "name", "x", "steps");
    saga_definition *d = NULL;
    saga_def_problems p = {0};
    (void)state;
    for (int i = 0; i < 1001; i++)
        json_array_append_new(
            json_object_get(body, "steps"),
            json_pack("{s:s, s:s, s:s}", "name", "a", "service", "s", "action", "a"));
    assert_int_equal(saga_definition_from_json(body, &d, &p), SAGA_EDEF);
    assert_int_equal(p.count, 1);
    assert_string_equal(p.items[0].where, "steps");
    assert_string_equal(p.items[0].message, "found 1001 steps; at most 1000 are allowed");
    json_decref(body);
    memset(&p, 0, sizeof p);
    assert_int_equal(saga_definition_load_file("no/such.json", &d, &p), SAGA_EIO);
    assert_int_equal(p.count, 1);
    assert_string_equal(p.items[0].where, "no/such.json");
    assert_string_equal(p.items[0].message, "cannot open: No such file or directory");
}

/* Sizes (issue 11): a definition is measured as stored (PostgreSQL's
 * jsonb text: what the trigger of migration 0011 counts), against
 * saga.limits max_definition_bytes (the default unless max_bytes says);
 * no string may pass 64 KiB, each reported where it is; neither rule
 * holds a stored definition back; a file far over the limit is not read.
 * No data file carries these: they would be 64 KiB and 256 KiB. */
static void test_size_limits(void **state)
{
    /* {"name": "x", "steps": [{"name": "a", "service": "s", "action": "a"}]} */
    static const char *const small =
        "{\n  \"name\" : \"x\",\n  \"steps\":[{\"name\":\"a\",\"service\":\"s\","
        "\"action\":\"a\"}]}";
    json_t *body;
    char *text, *big = malloc(70001), path[] = "/tmp/test_definition.XXXXXX";
    saga_definition *d = NULL;
    saga_def_problems p = {.max_bytes = 69};
    FILE *f;
    int fd;
    (void)state;

    /* 70 bytes as stored, whatever the file's spacing. */
    assert_int_equal(saga_definition_parse(small, strlen(small), &d, &p), SAGA_EDEF);
    assert_int_equal(p.count, 1);
    assert_string_equal(p.items[0].where, "$");
    assert_string_equal(p.items[0].message,
                        "the definition is 70 bytes (its JSON text as stored); the limit "
                        "is 69 (saga.limits max_definition_bytes)");
    memset(&p, 0, sizeof p);
    p.max_bytes = 70;
    assert_int_equal(saga_definition_parse(small, strlen(small), &d, &p), SAGA_OK);
    saga_definition_free(d);

    /* The default: 262,144 bytes. */
    memset(big, 'x', 60000);
    big[60000] = '\0';
    body = json_pack("{s:s, s:[{s:s, s:s, s:s, s:{s:s, s:s, s:s, s:s, s:s}}]}", "name",
                     "big", "steps", "name", "a", "service", "s", "action", "a", "input",
                     "a", big, "b", big, "c", big, "d", big, "e", big);
    memset(&p, 0, sizeof p);
    assert_int_equal(saga_definition_from_json(body, &d, &p), SAGA_EDEF);
    assert_int_equal(p.count, 1);
    assert_string_equal(p.items[0].message,
                        "the definition is 300,128 bytes (its JSON text as stored); the "
                        "limit is 262,144 (saga.limits max_definition_bytes)");
    /* A larger limit from the database, or a stored one: accepted. */
    memset(&p, 0, sizeof p);
    p.max_bytes = 300128;
    assert_int_equal(saga_definition_from_json(body, &d, &p), SAGA_OK);
    saga_definition_free(d);
    memset(&p, 0, sizeof p);
    p.stored = 1;
    assert_int_equal(saga_definition_from_json(body, &d, &p), SAGA_OK);
    saga_definition_free(d);
    json_decref(body);

    /* Strings over 64 KiB, values and keys, each with its place. */
    memset(big, 'y', 70000);
    big[70000] = '\0';
    body = json_pack("{s:s, s:s, s:[{s:s, s:s, s:s, s:{s:[s, s], s:s}}]}", "name", "long",
                     "description", big, "steps", "name", "a", "service", "s", "action",
                     "a", "input", "note", "short", big, big, "ok");
    memset(&p, 0, sizeof p);
    assert_int_equal(saga_definition_from_json(body, &d, &p), SAGA_EDEF);
    assert_int_equal(p.count, 3);
    assert_string_equal(p.items[0].where, "description");
    assert_string_equal(p.items[0].message,
                        "a string of 70,000 bytes; at most 65,536 are allowed (a "
                        "definition holds names, templates and text: data belongs in the "
                        "saga's input)");
    assert_string_equal(p.items[1].where, "steps[0].input.note[1]");
    assert_string_equal(p.items[1].message, p.items[0].message);
    assert_string_equal(p.items[2].where, "steps[0].input");
    assert_string_equal(p.items[2].message,
                        "a key of 70,000 bytes (\"yyyyyyyyyyyyyyyyyyyy...\"); at most "
                        "65,536 are allowed");
    memset(&p, 0, sizeof p);
    p.stored = 1;
    assert_int_equal(saga_definition_from_json(body, &d, &p), SAGA_OK);
    saga_definition_free(d);

    /* A file over 16 times the limit is not read, let alone parsed. */
    text = json_dumps(body, JSON_INDENT(2));
    fd = mkstemp(path);
    assert_true(fd >= 0);
    f = fdopen(fd, "w");
    fputs(text, f);
    fclose(f);
    memset(&p, 0, sizeof p);
    p.max_bytes = 4096;
    assert_int_equal(saga_definition_load_file(path, &d, &p), SAGA_EDEF);
    assert_null(d);
    assert_int_equal(p.count, 1);
    assert_string_equal(p.items[0].message,
                        "the file is over 65,536 bytes, 16 times the limit of 4,096 "
                        "(saga.limits max_definition_bytes); not read");
    /* Under the default limit it is read, and its strings refused. */
    memset(&p, 0, sizeof p);
    assert_int_equal(saga_definition_load_file(path, &d, &p), SAGA_EDEF);
    assert_int_equal(p.count, 3);
    unlink(path);
    free(text);
    json_decref(body);
    free(big);
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
        cmocka_unit_test(test_ref_parser_shared),
        cmocka_unit_test(test_every_message_exactly),
        cmocka_unit_test(test_too_many_steps_and_no_file),
        cmocka_unit_test(test_stored_definitions_load_under_the_engine_rules),
        cmocka_unit_test(test_size_limits),
    };
    return cmocka_run_group_tests_name("definitions", tests, NULL, NULL);
}
