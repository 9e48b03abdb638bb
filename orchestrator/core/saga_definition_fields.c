/* saga_definition_fields.c - reading a definition's typed fields (strings,
 * identifiers, durations, numbers in a range, retry policies, allowed keys),
 * each refusal a problem saying where and what was expected. */
#include "saga_definition_internal.h"

/* Names of steps and services: letters, digits, '_', '-', '.'. */
static int is_ident(const char *s)
{
    if (*s == '\0' || strlen(s) > 100)
        return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-' && *s != '.')
            return 0;
    return 1;
}

/* Unknown keys of obj; skip names one that the caller reports itself. */
void saga__def_check_keys(json_t *obj, const char *where, const char *const *allowed,
                          const char *skip, saga_def_problems *p)
{
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v)
    {
        int ok = skip != NULL && strcmp(k, skip) == 0;
        char list[256] = "";
        for (int i = 0; allowed[i] != NULL; i++) {
            if (strcmp(k, allowed[i]) == 0)
                ok = 1;
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s",
                     i ? ", " : "", allowed[i]);
        }
        if (!ok)
            saga__def_problem(p, where, "unknown key \"%s\" (expected one of: %s)", k,
                              list);
    }
}

char *saga__def_get_string(json_t *obj, const char *key, const char *where, int required,
                           int ident, saga_def_problems *p)
{
    json_t *v = json_object_get(obj, key);
    char path[300];
    snprintf(path, sizeof path, "%s%s%s", where, *where ? "." : "", key);
    if (v == NULL) {
        if (required)
            saga__def_problem(p, path, "missing (expected a string)");
        return NULL;
    }
    if (!json_is_string(v)) {
        saga__def_problem(p, path, "found %s, expected a string", saga__def_type_name(v));
        return NULL;
    }
    if (ident && !is_ident(json_string_value(v))) {
        saga__def_problem(
            p, path,
            "\"%s\" is not a valid name (expected 1-100 letters, digits, '_', '-', '.')",
            json_string_value(v));
        return NULL;
    }
    return strdup(json_string_value(v));
}

/* A duration at obj.key into *out (left alone unless valid). Returns 1 when
 * the key is absent, 0 when it was valid, -1 after reporting a problem. */
int saga__def_get_duration(json_t *obj, const char *key, const char *where, int64_t *out,
                           saga_def_problems *p)
{
    json_t *v = json_object_get(obj, key);
    char path[300];
    int64_t ms;
    if (v == NULL)
        return 1;
    snprintf(path, sizeof path, "%s%s%s", where, *where ? "." : "", key);
    if (!json_is_string(v)) {
        saga__def_problem(
            p, path,
            "found %s, expected a duration string such as \"250ms\", \"10s\", "
            "\"5m\" or \"1h\"",
            saga__def_type_name(v));
        return -1;
    }
    if (saga_duration_parse(json_string_value(v), &ms) != 0 || ms <= 0) {
        saga__def_problem(
            p, path,
            "\"%s\" is not a positive duration (expected e.g. \"250ms\", \"10s\", "
            "\"5m\", \"1h\")",
            json_string_value(v));
        return -1;
    }
    *out = ms;
    return 0;
}

/* A number at obj.key within [lo, hi] (an integer if integer), else a
 * problem saying what was found. Returns 0 when absent or bad. */
int saga__def_get_number(json_t *obj, const char *key, const char *where, double lo,
                         double hi, int integer, double *out, saga_def_problems *p)
{
    json_t *f = json_object_get(obj, key);
    char path[340], found[64];
    if (f == NULL)
        return 0;
    if ((integer ? json_is_integer(f) : json_is_number(f)) &&
        json_number_value(f) >= lo && json_number_value(f) <= hi) {
        *out = json_number_value(f);
        return 1;
    }
    snprintf(path, sizeof path, "%s.%s", where, key);
    saga__def_problem(p, path, "found %s, expected %s from %g to %g",
                      saga__def_describe(f, found, sizeof found),
                      integer ? "an integer" : "a number", lo, hi);
    return 0;
}

/* The retry policy at obj.key over *r (which holds the inherited values,
 * whose origins are in *from). */
void saga__def_get_retry(json_t *obj, const char *key, const char *where,
                         saga_retry_policy *r, retry_from *from, saga_def_problems *p)
{
    static const char *const keys[] = {"max_attempts", "backoff", "max_backoff",
                                       "multiplier",   "jitter",  NULL};
    json_t *v = json_object_get(obj, key);
    char path[300];
    double num;
    int b, mb;
    if (v == NULL)
        return;
    snprintf(path, sizeof path, "%s%s%s", where, *where ? "." : "", key);
    if (!json_is_object(v)) {
        saga__def_problem(p, path, "found %s, expected an object with %s",
                          saga__def_type_name(v),
                          "max_attempts, backoff, max_backoff, multiplier, jitter");
        return;
    }
    saga__def_check_keys(v, path, keys, NULL, p);
    if (saga__def_get_number(v, "max_attempts", path, 1, 1000, 1, &num, p))
        r->max_attempts = (int)num;
    if ((b = saga__def_get_duration(v, "backoff", path, &r->backoff_ms, p)) == 0)
        snprintf(from->backoff, sizeof from->backoff, "%s.backoff", path);
    if ((mb = saga__def_get_duration(v, "max_backoff", path, &r->max_backoff_ms, p)) == 0)
        snprintf(from->max_backoff, sizeof from->max_backoff, "%s.max_backoff", path);
    if (saga__def_get_number(v, "multiplier", path, 1, 100, 0, &num, p))
        r->multiplier = num;
    if (saga__def_get_number(v, "jitter", path, 0, 1, 0, &num, p))
        r->jitter = num;
    /* Compared only where one of the two is set (an inherited pair was
     * checked where it was set) and neither was reported already. */
    if ((b == 0 || mb == 0) && b >= 0 && mb >= 0 && r->max_backoff_ms < r->backoff_ms) {
        char bs[32], ms[32];
        saga_duration_format(r->backoff_ms, bs, sizeof bs);
        saga_duration_format(r->max_backoff_ms, ms, sizeof ms);
        saga__def_problem(
            p, path,
            "max_backoff %s (from %s) is shorter than backoff %s (from %s); "
            "max_backoff caps the delay, so it must be at least backoff",
            ms, from->max_backoff, bs, from->backoff);
    }
}
