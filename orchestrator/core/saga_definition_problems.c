/* saga_definition_problems.c - the problems a definition has, collected
 * with where they are (a path like steps[2].retry.backoff) and a value
 * described as a user would read it; and strings over the size limit. */
#include "saga_definition_internal.h"

static void vproblem(saga_def_problems *p, const char *where, const char *fmt, va_list ap)
{
    if (p->count < (int)(sizeof p->items / sizeof p->items[0])) {
        saga_def_problem *it = &p->items[p->count];
        snprintf(it->where, sizeof it->where, "%s", where);
        vsnprintf(it->message, sizeof it->message, fmt, ap);
    }
    p->count++;
}

void saga__def_problem(saga_def_problems *p, const char *where, const char *fmt, ...)
{
    va_list ap;
    if (p == NULL)
        return;
    va_start(ap, fmt);
    vproblem(p, where, fmt, ap);
    va_end(ap);
}

/* A rule that guards authors against mistakes but that the engine does
 * not need to run a definition: not applied to stored definitions. */
void saga__def_rule(saga_def_problems *p, const char *where, const char *fmt, ...)
{
    va_list ap;
    if (p == NULL || p->stored)
        return;
    va_start(ap, fmt);
    vproblem(p, where, fmt, ap);
    va_end(ap);
}

const char *saga__def_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    }
    return "?";
}

/* What was found, for a message: the value itself when it is short and
 * plain (1.5, 0, true, the string "3"), else its type. */
const char *saga__def_describe(const json_t *v, char *buf, size_t size)
{
    switch (json_typeof(v)) {
    case JSON_INTEGER:
        snprintf(buf, size, "%lld", (long long)json_integer_value(v));
        return buf;
    case JSON_REAL:
        snprintf(buf, size, "%g", json_real_value(v));
        return buf;
    case JSON_STRING:
        if (json_string_length(v) <= 40) {
            snprintf(buf, size, "the string \"%s\"", json_string_value(v));
            return buf;
        }
        return "a string";
    case JSON_TRUE:
        return "true";
    case JSON_FALSE:
        return "false";
    default:
        return saga__def_type_name(v);
    }
}

int64_t saga__def_max_bytes_of(const saga_def_problems *p)
{
    return p != NULL && p->max_bytes > 0 ? p->max_bytes
                                         : SAGA_DEFAULT_MAX_DEFINITION_BYTES;
}

void saga__def_long_strings(string_walk *w, size_t len, json_t *v)
{
    char n1[32], n2[32];
    const char *k;
    json_t *child;
    size_t i;

    if (json_is_string(v) && json_string_length(v) > SAGA_DEF_MAX_STRING_BYTES) {
        saga__def_rule(
            w->p, len ? w->path : "$",
            "a string of %s bytes; at most %s are allowed (a definition holds names, "
            "templates and text: data belongs in the saga's input)",
            saga__bytes_text((int64_t)json_string_length(v), n1, sizeof n1),
            saga__bytes_text(SAGA_DEF_MAX_STRING_BYTES, n2, sizeof n2));
    } else if (json_is_object(v)) {
        json_object_foreach(v, k, child)
        {
            size_t klen = strlen(k);
            int n;
            if (klen > SAGA_DEF_MAX_STRING_BYTES)
                saga__def_rule(
                    w->p, len ? w->path : "$",
                    "a key of %s bytes (\"%.20s...\"); at most %s are allowed",
                    saga__bytes_text((int64_t)klen, n1, sizeof n1), k,
                    saga__bytes_text(SAGA_DEF_MAX_STRING_BYTES, n2, sizeof n2));
            n = snprintf(w->path + len, sizeof w->path - len, "%s%s", len ? "." : "", k);
            saga__def_long_strings(w,
                                   n < 0 || len + (size_t)n >= sizeof w->path
                                       ? sizeof w->path - 1
                                       : len + (size_t)n,
                                   child);
            w->path[len] = '\0';
        }
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, child)
        {
            int n = snprintf(w->path + len, sizeof w->path - len, "[%zu]", i);
            saga__def_long_strings(w,
                                   n < 0 || len + (size_t)n >= sizeof w->path
                                       ? sizeof w->path - 1
                                       : len + (size_t)n,
                                   child);
            w->path[len] = '\0';
        }
    }
}
