/* saga_definition_fanout.c - a fan-out step's keys ("for_each",
 * "concurrency", "max_elements") and their rules: the list is named by
 * one reference to the input or an earlier step's output, a pivot cannot
 * fan out, and the limits stay within what the engine and the protocol
 * hold (docs/DEFINITIONS.md, "Fan-out"). */
#include "saga/protocol.h"
#include "saga_definition_internal.h"

void saga__def_parse_fanout(json_t *s, const char *where, saga_step_def *st,
                            saga_def_problems *p)
{
    json_t *v = json_object_get(s, "for_each");
    char path[96];
    double num;

    snprintf(path, sizeof path, "%s.for_each", where);
    st->concurrency = SAGA_DEFAULT_CONCURRENCY;
    st->max_elements = SAGA_DEFAULT_MAX_ELEMENTS;
    if (v == NULL) {
        static const char *const only[] = {"concurrency", "max_elements", NULL};
        for (int k = 0; only[k] != NULL; k++)
            if (json_object_get(s, only[k]) != NULL) {
                char kp[128];
                snprintf(kp, sizeof kp, "%s.%s", where, only[k]);
                saga__def_rule(p, kp,
                               "\"%s\" is a fan-out setting, and this step has no "
                               "\"for_each\" (add one, or remove \"%s\")",
                               only[k], only[k]);
            }
        return;
    }
    if (!json_is_string(v)) {
        saga__def_problem(p, path,
                          "found %s, expected a reference to a list, such as "
                          "\"${input.items}\"",
                          saga__def_type_name(v));
        return;
    }
    {
        const char *t = json_string_value(v);
        size_t n = json_string_length(v);
        /* Exactly one "${...}": the list itself, not text made of it. */
        if (n < 4 || strncmp(t, "${", 2) != 0 || t[n - 1] != '}' ||
            memchr(t + 2, '}', n - 3) != NULL || strstr(t + 2, "${") != NULL) {
            saga__def_problem(p, path,
                              "\"%.100s\" is not a reference to a list (expected one "
                              "reference and nothing around it, such as "
                              "\"${input.items}\" or \"${steps.NAME.output.FIELD}\")",
                              t);
            return;
        }
        st->for_each = strndup(t + 2, n - 3);
    }
    if (saga__def_get_number(s, "concurrency", where, 1, SAGA_MAX_CONCURRENCY, 1, &num,
                             p))
        st->concurrency = (int)num;
    if (saga__def_get_number(s, "max_elements", where, 1, SAGA_ELEMENTS_MAX, 1, &num, p))
        st->max_elements = (int)num;
}

void saga__def_check_fanout(saga_definition *def, int i, saga_template_ref_fn check,
                            saga_def_problems *p)
{
    saga_step_def *st = &def->steps[i];
    char where[64], path[96];
    ref_check rc = {def, i, p, 0};
    saga_ref_seg seg[1];
    char why[160];

    if (st->for_each == NULL)
        return;
    snprintf(where, sizeof where, "steps[%d]", i);
    snprintf(path, sizeof path, "%s.for_each", where);
    if (st->pivot)
        saga__def_rule(p, path,
                       "a pivot cannot fan out: its elements that succeeded before one "
                       "failed could not be undone (a pivot has no compensation); fan "
                       "out in a step before the pivot, or after it");
    if (saga_template_parse_ref(st->for_each, strlen(st->for_each), seg, 1, why,
                                sizeof why) >= 1 &&
        seg[0].key != NULL && seg[0].key_len == 4 && memcmp(seg[0].key, "saga", 4) == 0) {
        saga__def_problem(p, path,
                          "\"${%s}\" is not a list: the saga's id, name and version are "
                          "not lists (name a list of the input or of an earlier step's "
                          "output)",
                          st->for_each);
        return;
    }
    check(st->for_each, strlen(st->for_each), path, &rc);
    /* As for a member of a group: when an element fails, those in flight
     * are given up, which must never happen to an irreversible step. */
    if (st->irreversible && !st->forward_only)
        saga__def_rule(p, where,
                       "step \"%s\" fans out but has no compensation: when one element "
                       "fails while others are in flight, those are given up and the "
                       "steps before undone, which must never happen to an irreversible "
                       "step (add \"compensation\", or \"compensation\": null if there "
                       "is nothing to undo)",
                       st->name ? st->name : "?");
}
