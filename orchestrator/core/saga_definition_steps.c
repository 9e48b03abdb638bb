/* saga_definition_steps.c - a definition's steps: each step's fields, and
 * the rules between steps (unique names, groups, the pivot, compensations,
 * and which earlier steps a step's input may refer to). */
#include "saga_condition.h"
#include "saga_definition_internal.h"

static int seg_is(const saga_ref_seg *seg, const char *word)
{
    return seg->key != NULL && seg->key_len == strlen(word) &&
           memcmp(seg->key, word, seg->key_len) == 0;
}

static int check_ref(const char *path, size_t len, const char *where, void *arg)
{
    ref_check *rc = arg;
    saga_ref_seg seg[3];
    char why[160];
    int n, idx = -1, plen = (int)len;

    if (path == NULL) {
        saga__def_rule(rc->p, where, "unterminated \"${\" (expected \"${...}\")");
        return 0;
    }
    n = saga_template_parse_ref(path, len, seg, 3, why, sizeof why);
    if (n < 0) {
        saga__def_rule(rc->p, where, "\"${%.*s}\" is malformed: %s", plen, path, why);
        return 0;
    }
    if (seg_is(&seg[0], "input"))
        return 0;
    if (seg_is(&seg[0], "element") || seg_is(&seg[0], "index")) {
        if (!rc->elements)
            saga__def_problem(rc->p, where,
                              "\"${%.*s}\" names an element of a fan-out, and only the "
                              "input of a step with \"for_each\" has one",
                              plen, path);
        else if (seg_is(&seg[0], "index") && n != 1)
            saga__def_problem(rc->p, where,
                              "\"${%.*s}\": the index is a number (expected ${index})",
                              plen, path);
        return 0;
    }
    if (seg_is(&seg[0], "saga")) {
        if (n == 2 && (seg_is(&seg[1], "id") || seg_is(&seg[1], "name") ||
                       seg_is(&seg[1], "version")))
            return 0;
        saga__def_problem(
            rc->p, where,
            "\"${%.*s}\": saga has only id, name and version (expected ${saga.id}, "
            "${saga.name} or ${saga.version})",
            plen, path);
        return 0;
    }
    if (!seg_is(&seg[0], "steps")) {
        saga__def_problem(
            rc->p, where,
            "\"${%.*s}\" must start with input, steps.NAME.output or saga (id, name, "
            "version)%s",
            plen, path, rc->elements ? ", or element or index (this step fans out)" : "");
        return 0;
    }
    if (n < 2 || seg[1].key == NULL) {
        saga__def_problem(rc->p, where,
                          "\"${%.*s}\": expected steps.NAME.output, NAME a step", plen,
                          path);
        return 0;
    }
    for (int i = 0; i < rc->def->nsteps && idx < 0; i++) {
        const char *name = rc->def->steps[i].name;
        if (name != NULL && strlen(name) == seg[1].key_len &&
            memcmp(name, seg[1].key, seg[1].key_len) == 0)
            idx = i;
    }
    if (idx < 0)
        saga__def_problem(rc->p, where, "\"${%.*s}\" names unknown step \"%.*s\"", plen,
                          path, (int)seg[1].key_len, seg[1].key);
    else if (idx >= rc->def->steps[rc->step].stage_first && idx < rc->step)
        saga__def_problem(
            rc->p, where,
            "\"${%.*s}\" names step \"%s\", which runs at the same time as this one "
            "(same group)",
            plen, path, rc->def->steps[idx].name);
    else if (idx >= rc->step)
        saga__def_problem(
            rc->p, where,
            "\"${%.*s}\" names step \"%s\", which does not run before this one", plen,
            path, rc->def->steps[idx].name);
    else if (n < 3 || !seg_is(&seg[2], "output"))
        saga__def_problem(
            rc->p, where,
            "\"${%.*s}\": a step's data is its output (expected steps.%s.output, "
            "steps.%s.output.FIELD or steps.%s.output[N])",
            plen, path, rc->def->steps[idx].name, rc->def->steps[idx].name,
            rc->def->steps[idx].name);
    return 0;
}

/* A step's "when", parsed (its references are checked with the others). */
static void parse_when(json_t *s, const char *where, saga_step_def *st,
                       saga_def_problems *p)
{
    json_t *v = json_object_get(s, "when");
    char path[96];
    snprintf(path, sizeof path, "%s.when", where);
    if (v != NULL && !json_is_string(v)) {
        saga__def_problem(p, path,
                          "found %s, expected a condition (a string such as "
                          "\"${input.amount} > 1000\")",
                          saga__def_type_name(v));
    } else if (v != NULL) {
        char why[300];
        int column;
        int rc = saga_condition_parse(json_string_value(v), &st->when, &column, why,
                                      sizeof why);
        if (rc == SAGA_EDEF)
            saga__def_problem(p, path, "column %d: %s", column, why);
        else if (rc != SAGA_OK)
            saga__def_problem(p, path, "out of memory");
    }
}

/* A wait step: {"name", "wait": {"signal", "timeout"?, "default"?}, "when"?,
 * "group"?, "description"?}. It runs no service: the keys of one are
 * refused, each saying why. */
static void parse_wait(json_t *s, const char *where, saga_step_def *st,
                       saga_def_problems *p)
{
    static const char *const keys[] = {"signal", "timeout", "default", NULL};
    static const char *const not_here[] = {
        "service",  "action",      "compensation",       "input",
        "timeout",  "retry",       "compensation_retry", "pivot",
        "for_each", "concurrency", "max_elements",       "child",
        NULL};
    json_t *w = json_object_get(s, "wait"), *v;
    char path[96];
    snprintf(path, sizeof path, "%s.wait", where);
    for (int k = 0; not_here[k] != NULL; k++)
        if (json_object_get(s, not_here[k]) != NULL) {
            char kp[128];
            snprintf(kp, sizeof kp, "%s.%s", where, not_here[k]);
            saga__def_problem(p, kp,
                              "a wait step sends nothing and has nothing to undo: "
                              "\"%s\" has no place here (%s)",
                              not_here[k],
                              strcmp(not_here[k], "timeout") == 0
                                  ? "its timeout is wait.timeout"
                              : strcmp(not_here[k], "for_each") == 0 ||
                                      strcmp(not_here[k], "concurrency") == 0 ||
                                      strcmp(not_here[k], "max_elements") == 0
                                  ? "a wait step waits for one signal; it cannot fan out"
                              : strcmp(not_here[k], "child") == 0
                                  ? "a step either waits for a signal or starts a child"
                                  : "remove it, or make this a step a service runs");
        }
    if (!json_is_object(w)) {
        saga__def_problem(p, path,
                          "found %s, expected an object such as {\"signal\": "
                          "\"approval\", \"timeout\": \"48h\"}",
                          saga__def_type_name(w));
        return;
    }
    saga__def_check_keys(w, path, keys, NULL, p);
    st->wait_signal = saga__def_get_string(w, "signal", path, 1, 1, p);
    if (json_object_get(w, "timeout") != NULL)
        saga__def_get_duration(w, "timeout", path, &st->wait_timeout_ms, p);
    v = json_object_get(w, "default");
    if (v != NULL && !json_is_object(v)) {
        char dp[128];
        snprintf(dp, sizeof dp, "%s.default", path);
        saga__def_problem(p, dp,
                          "found %s, expected an object (the step's output at the "
                          "timeout)",
                          saga__def_type_name(v));
    } else if (v != NULL && json_object_get(w, "timeout") == NULL) {
        char dp[128];
        snprintf(dp, sizeof dp, "%s.default", path);
        saga__def_rule(p, dp,
                       "a default is taken at the timeout, and this wait has none (add "
                       "\"timeout\")");
    } else if (v != NULL) {
        st->wait_default = json_incref(v);
    }
    st->input = json_object();
    v = json_object_get(s, "description");
    if (v != NULL && !json_is_string(v)) {
        snprintf(path, sizeof path, "%s.description", where);
        saga__def_problem(p, path, "found %s, expected a string", saga__def_type_name(v));
    }
    st->group = saga__def_get_string(s, "group", where, 0, 1, p);
    parse_when(s, where, st, p);
}

void saga__def_parse_step(json_t *s, int i, saga_definition *def,
                          const step_defaults *dflt, saga_def_problems *p)
{
    static const char *const keys[] = {
        "name",  "service",     "action",      "compensation",
        "input", "timeout",     "retry",       "compensation_retry",
        "pivot", "description", "group",       "when",
        "wait",  "for_each",    "concurrency", "max_elements",
        "child", NULL};
    saga_step_def *st = &def->steps[i];
    retry_from rfrom = dflt->retry_from, cfrom = dflt->comp_from;
    char where[64], path[96];
    json_t *v;

    snprintf(where, sizeof where, "steps[%d]", i);
    st->retry = dflt->retry;
    st->compensation_retry = dflt->comp;
    st->timeout_ms = dflt->timeout_ms;
    if (!json_is_object(s)) {
        saga__def_problem(p, where, "found %s, expected a step object",
                          saga__def_type_name(s));
        return;
    }
    saga__def_check_keys(s, where, keys, NULL, p);
    st->name = saga__def_get_string(s, "name", where, 1, 1, p);
    if (st->name != NULL && strchr(st->name, '.') != NULL) {
        snprintf(path, sizeof path, "%s.name", where);
        saga__def_rule(
            p, path,
            "\"%s\": a step name cannot contain '.', because references such as "
            "${steps.NAME.output} split on '.' and could never name this step",
            st->name);
    }
    if (json_object_get(s, "wait") != NULL) {
        parse_wait(s, where, st, p);
        return;
    }
    if (json_object_get(s, "child") != NULL) {
        /* Its own keys; input, pivot, description, group and when below. */
        saga__def_parse_child(s, where, st, p);
    } else {
        st->service = saga__def_get_string(s, "service", where, 1, 1, p);
        st->action = saga__def_get_string(s, "action", where, 1, 1, p);
        v = json_object_get(s, "compensation");
        if (v != NULL && !json_is_null(v))
            st->compensation = saga__def_get_string(s, "compensation", where, 0, 1, p);
    }
    v = json_object_get(s, "input");
    snprintf(path, sizeof path, "%s.input", where);
    if (v != NULL && !json_is_object(v))
        saga__def_problem(p, path, "found %s, expected an object",
                          saga__def_type_name(v));
    else
        st->input = v != NULL ? json_incref(v) : json_object();
    if (st->child == NULL) {
        saga__def_get_duration(s, "timeout", where, &st->timeout_ms, p);
        saga__def_get_retry(s, "retry", where, &st->retry, &rfrom, p);
        saga__def_get_retry(s, "compensation_retry", where, &st->compensation_retry,
                            &cfrom, p);
    }
    v = json_object_get(s, "pivot");
    snprintf(path, sizeof path, "%s.pivot", where);
    if (v != NULL && !json_is_boolean(v))
        saga__def_problem(p, path, "found %s, expected true or false",
                          saga__def_type_name(v));
    else if (v != NULL)
        st->pivot = json_is_true(v);
    v = json_object_get(s, "description");
    snprintf(path, sizeof path, "%s.description", where);
    if (v != NULL && !json_is_string(v))
        saga__def_problem(p, path, "found %s, expected a string", saga__def_type_name(v));
    st->group = saga__def_get_string(s, "group", where, 0, 1, p);
    parse_when(s, where, st, p);
    if (json_object_get(s, "child") == NULL)
        saga__def_parse_fanout(s, where, st, p);
}

/* A reference in a step's "when", checked as one in its input is, with
 * its column. */
typedef struct when_check {
    ref_check *rc;
    const char *where;
} when_check;

static int check_when_ref(const char *path, size_t len, int column, void *arg)
{
    when_check *w = arg;
    char where[96];
    snprintf(where, sizeof where, "%s, column %d", w->where, column);
    return check_ref(path, len, where, w->rc);
}

/* The rules that need every step parsed: names, the pivot, groups and
 * compensations. */
void saga__def_check_steps(saga_definition *def, json_t *steps, saga_def_problems *p)
{
    int first_pivot = -1;

    for (int i = 0; i < def->nsteps; i++) {
        saga_step_def *st = &def->steps[i];
        char where[64], path[96];
        snprintf(where, sizeof where, "steps[%d]", i);
        for (int j = 0; j < i && st->name; j++)
            if (def->steps[j].name && strcmp(def->steps[j].name, st->name) == 0)
                saga__def_problem(p, where, "duplicate step name \"%s\" (also steps[%d])",
                                  st->name, j);
        if (st->pivot && first_pivot >= 0) {
            snprintf(path, sizeof path, "%s.pivot", where);
            saga__def_rule(
                p, path,
                "a second pivot (the first is steps[%d]): a saga has one point of no "
                "return, and every step after it is forward-only already (remove "
                "\"pivot\" here)",
                first_pivot);
        } else if (st->pivot) {
            first_pivot = i;
        }
        st->forward_only = first_pivot >= 0;
        /* A wait step has no effect to undo: never irreversible; a child
         * step is undone by compensating its child. */
        st->irreversible =
            st->wait_signal == NULL && st->child == NULL &&
            json_object_get(json_array_get(steps, (size_t)i), "compensation") == NULL;
        if (st->compensation != NULL && st->forward_only) {
            snprintf(path, sizeof path, "%s.compensation", where);
            if (st->pivot)
                saga__def_rule(
                    p, path,
                    "\"%s\" would never run: a pivot is never compensated (a definite "
                    "failure of the pivot means it took no effect); remove it",
                    st->compensation);
            else
                saga__def_rule(
                    p, path,
                    "\"%s\" would never run: steps after the pivot (steps[%d]) are "
                    "retried until they succeed and never compensated; remove it",
                    st->compensation, first_pivot);
        }
        /* Adjacent steps of one group run together: a stage. */
        st->stage_first = st->stage_last = i;
        if (st->group != NULL && i > 0 && def->steps[i - 1].group != NULL &&
            strcmp(def->steps[i - 1].group, st->group) == 0) {
            st->stage_first = def->steps[i - 1].stage_first;
            for (int j = st->stage_first; j <= i; j++)
                def->steps[j].stage_last = i;
        } else if (st->group != NULL) {
            for (int j = 0; j < i; j++)
                if (def->steps[j].group != NULL &&
                    strcmp(def->steps[j].group, st->group) == 0)
                    saga__def_problem(
                        p, where,
                        "group \"%s\" is split: its steps must be next to each other "
                        "(also steps[%d])",
                        st->group, j);
        }
        if (st->group != NULL && (st->pivot || st->forward_only))
            saga__def_problem(
                p, where,
                "step \"%s\" is at or after the pivot and in group \"%s\": steps "
                "that can only go forward run one at a time",
                st->name ? st->name : "?", st->group);
    }
    for (int i = 0; i < def->nsteps; i++) {
        saga_step_def *st = &def->steps[i];
        char where[64];
        json_t *s = json_array_get(steps, (size_t)i);
        ref_check rc = {def, i, p, st->for_each != NULL}, wrc = {def, i, p, 0};
        int members = 0;

        snprintf(where, sizeof where, "steps[%d].input", i);
        if (st->input != NULL)
            saga_template_refs(st->input, where, check_ref, &rc);
        saga__def_check_fanout(def, i, check_ref, p);
        if (st->when != NULL) {
            /* Evaluated once for the step, before any element. */
            when_check wc = {&wrc, where};
            snprintf(where, sizeof where, "steps[%d].when", i);
            saga_condition_refs(st->when, check_when_ref, &wc);
        }
        snprintf(where, sizeof where, "steps[%d]", i);
        for (int j = 0; j < def->nsteps && st->group != NULL; j++)
            if (def->steps[j].group != NULL &&
                strcmp(def->steps[j].group, st->group) == 0)
                members++;
        if (members == 1) {
            char path[96];
            snprintf(path, sizeof path, "%s.group", where);
            saga__def_rule(
                p, path,
                "group \"%s\" has only this step: a group runs adjacent steps in "
                "parallel, so it needs two or more (remove \"group\", or put the "
                "steps that run with this one next to it in the same group)",
                st->group);
        }
        if (!json_is_object(s) || json_object_get(s, "compensation") != NULL ||
            st->forward_only || json_object_get(s, "wait") != NULL ||
            json_object_get(s, "child") != NULL)
            continue;
        /* A member of a group can be given up while it is in flight: when
         * another member fails, the engine compensates and ignores its late
         * reply. An irreversible step must never be given up, so every
         * member must say how it is undone, even in the last group. */
        if (st->stage_last > st->stage_first)
            saga__def_rule(
                p, where,
                "step \"%s\" is in parallel group \"%s\" but has no compensation: "
                "if another step of the group fails while this one is in flight, "
                "this one is given up and the steps before it are undone, which "
                "must never happen to an irreversible step (add \"compensation\", "
                "or \"compensation\": null if there is nothing to undo)",
                st->name ? st->name : "?", st->group);
        /* A step that later steps can still undo needs a compensation,
         * unless the author says there is nothing to undo (null). */
        else if (st->stage_last < def->nsteps - 1)
            saga__def_problem(
                p, where,
                "step \"%s\" has no compensation, but later steps can fail and "
                "undo it (add \"compensation\", or \"compensation\": null if there "
                "is nothing to undo)",
                st->name ? st->name : "?");
    }
}
