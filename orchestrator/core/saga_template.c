/* Template resolution for step inputs. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "saga_template.h"
#include "saga_shared.h"

/* The reference grammar, shared by validation and resolution: the
 * validator must reject exactly the paths that resolution cannot parse. */
typedef struct ref_iter {
    const char *p;
    size_t len, pos;
    int n; /* segments returned so far */
} ref_iter;

/* Next segment: 1 (in *seg), 0 at the end, -1 when malformed (why). */
static int ref_next(ref_iter *it, saga_ref_seg *seg, char *why, size_t wsz)
{
    const char *p = it->p;
    size_t len = it->len, i = it->pos;

    if (i >= len) {
        if (it->n > 0)
            return 0;
        snprintf(why, wsz, "it is empty (expected a path such as input.x)");
        return -1;
    }
    if (it->n == 0 && (p[i] == '.' || p[i] == '[')) {
        snprintf(why, wsz, "it starts with \"%c\" (expected a name such as input)", p[i]);
        return -1;
    }
    if (it->n > 0 && p[i] == '.') {
        i++;
        if (i >= len) {
            snprintf(why, wsz, "it ends with \".\" (expected a field name after it)");
            return -1;
        }
        if (p[i] == '.') {
            snprintf(why, wsz, "\"..\" leaves an empty field name");
            return -1;
        }
        if (p[i] == '[') {
            snprintf(why, wsz,
                     "\".[\" leaves an empty field name (write a[0], not a.[0])");
            return -1;
        }
    } else if (it->n > 0 && p[i] != '[' && p[i] != ']') {
        /* Only an index ends just before a character other than '.', '['
         * or ']': a field name runs up to one of them. */
        snprintf(why, wsz, "\"%c\" after \"]\" (expected \".\", \"[\" or the end)", p[i]);
        return -1;
    }
    if (p[i] == ']') {
        snprintf(why, wsz, "\"]\" without a matching \"[\"");
        return -1;
    }
    if (p[i] == '[') {
        size_t start = ++i, idx = 0;
        if (i >= len || p[i] < '0' || p[i] > '9') {
            snprintf(why, wsz,
                     "\"[\" must be followed by an index and \"]\", such as [0]");
            return -1;
        }
        for (; i < len && p[i] >= '0' && p[i] <= '9'; i++) {
            if (idx > 100000000) {
                snprintf(why, wsz, "index [%.*s...] is too large", 10, p + start);
                return -1;
            }
            idx = idx * 10 + (size_t)(p[i] - '0');
        }
        if (i >= len || p[i] != ']') {
            snprintf(why, wsz, "\"[%.*s\" has no closing \"]\"", (int)(i - start),
                     p + start);
            return -1;
        }
        seg->key = NULL;
        seg->key_len = 0;
        seg->index = idx;
        i++;
    } else {
        size_t start = i;
        while (i < len && p[i] != '.' && p[i] != '[' && p[i] != ']')
            i++;
        seg->key = p + start;
        seg->key_len = i - start;
        seg->index = 0;
    }
    it->pos = i;
    it->n++;
    return 1;
}

int saga_template_parse_ref(const char *path, size_t len, saga_ref_seg *segs, int max,
                            char *why, size_t why_size)
{
    ref_iter it = {path, len, 0, 0};
    saga_ref_seg seg;
    int rc;

    /* Checked before the grammar so that "${ input.x }" is not explained
     * as a path that does not start with input. */
    for (size_t i = 0; i < len; i++) {
        if (isspace((unsigned char)path[i])) {
            snprintf(why, why_size,
                     "whitespace is not allowed in a reference (write ${input.x}, not "
                     "${ input.x })");
            return -1;
        }
        if (path[i] == '$' && i + 1 < len && path[i + 1] == '{') {
            snprintf(why, why_size,
                     "it contains \"${\": references cannot be nested (only the first "
                     "\"}\" ends a reference)");
            return -1;
        }
    }
    while ((rc = ref_next(&it, &seg, why, why_size)) == 1)
        if (it.n <= max)
            segs[it.n - 1] = seg;
    return rc < 0 ? -1 : it.n;
}

/* Look up a path like "steps.a.output.items[0].sku" in ctx. Returns a
 * borrowed reference or NULL; when the path is malformed, NULL with why
 * filled in and *bad set. */
static json_t *lookup(const json_t *ctx, const char *path, size_t len, int *bad,
                      char *why, size_t wsz)
{
    json_t *cur = (json_t *)ctx;
    ref_iter it = {path, len, 0, 0};
    saga_ref_seg seg;

    *bad = saga_template_parse_ref(path, len, NULL, 0, why, wsz) < 0;
    if (*bad)
        return NULL;
    while (cur != NULL && ref_next(&it, &seg, why, wsz) == 1) {
        if (seg.key == NULL)
            cur = json_is_array(cur) ? json_array_get(cur, seg.index) : NULL;
        else
            cur =
                json_is_object(cur) ? json_object_getn(cur, seg.key, seg.key_len) : NULL;
    }
    return cur;
}

const json_t *saga_template_lookup(const json_t *ctx, const char *path, size_t len)
{
    char why[160];
    int bad;
    return lookup(ctx, path, len, &bad, why, sizeof why);
}

/* Growable string for interpolation. */
typedef struct sbuf {
    char *p;
    size_t len, cap;
} sbuf;

static int sb_add(sbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        char *q;
        while (cap < b->len + n + 1)
            cap *= 2;
        q = realloc(b->p, cap);
        if (q == NULL)
            return -1;
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

static json_t *resolve_string(const char *s, const json_t *ctx, saga_error *err)
{
    size_t n = strlen(s);
    sbuf b = {0};
    char why[160];
    int bad;

    /* Whole-value reference: keep the JSON type. */
    if (n >= 3 && s[0] == '$' && s[1] == '{' && s[n - 1] == '}' &&
        memchr(s + 2, '}', n - 3) == NULL && strstr(s + 2, "${") == NULL) {
        json_t *v = lookup(ctx, s + 2, n - 3, &bad, why, sizeof why);
        if (v == NULL) {
            if (bad)
                saga__error_set(err, SAGA_EDEF, "malformed reference \"%s\": %s", s, why);
            else
                saga__error_set(err, SAGA_ENOTFOUND,
                                "reference \"%s\" resolved to nothing", s);
            return NULL;
        }
        return json_deep_copy(v);
    }
    for (size_t i = 0; i < n;) {
        if (s[i] == '$' && i + 2 < n && s[i + 1] == '$' && s[i + 2] == '{') {
            if (sb_add(&b, "${", 2) != 0)
                goto nomem;
            i += 3;
        } else if (s[i] == '$' && i + 1 < n && s[i + 1] == '{') {
            const char *end = strchr(s + i + 2, '}');
            json_t *v;
            if (end == NULL) {
                saga__error_set(err, SAGA_EDEF, "unterminated \"${\" in \"%s\"", s);
                free(b.p);
                return NULL;
            }
            v = lookup(ctx, s + i + 2, (size_t)(end - (s + i + 2)), &bad, why,
                       sizeof why);
            if (v == NULL) {
                if (bad)
                    saga__error_set(err, SAGA_EDEF, "malformed reference \"${%.*s}\": %s",
                                    (int)(end - (s + i + 2)), s + i + 2, why);
                else
                    saga__error_set(err, SAGA_ENOTFOUND,
                                    "reference \"${%.*s}\" resolved to nothing",
                                    (int)(end - (s + i + 2)), s + i + 2);
                free(b.p);
                return NULL;
            }
            if (json_is_string(v)) {
                if (sb_add(&b, json_string_value(v), json_string_length(v)) != 0)
                    goto nomem;
            } else {
                char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
                int rc = t ? sb_add(&b, t, strlen(t)) : -1;
                free(t);
                if (rc != 0)
                    goto nomem;
            }
            i = (size_t)(end - s) + 1;
        } else {
            if (sb_add(&b, s + i, 1) != 0)
                goto nomem;
            i++;
        }
    }
    {
        json_t *out = json_stringn(b.p ? b.p : "", b.len);
        free(b.p);
        return out;
    }
nomem:
    free(b.p);
    saga__error_set(err, SAGA_ENOMEM, "out of memory");
    return NULL;
}

json_t *saga_template_resolve(const json_t *tmpl, const json_t *ctx, saga_error *err)
{
    if (tmpl == NULL)
        return json_object();
    if (json_is_string(tmpl))
        return resolve_string(json_string_value(tmpl), ctx, err);
    if (json_is_object(tmpl)) {
        json_t *out = json_object();
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)tmpl, k, v)
        {
            json_t *r = saga_template_resolve(v, ctx, err);
            if (r == NULL) {
                json_decref(out);
                return NULL;
            }
            json_object_set_new(out, k, r);
        }
        return out;
    }
    if (json_is_array(tmpl)) {
        json_t *out = json_array();
        size_t i;
        json_t *v;
        json_array_foreach(tmpl, i, v)
        {
            json_t *r = saga_template_resolve(v, ctx, err);
            if (r == NULL) {
                json_decref(out);
                return NULL;
            }
            json_array_append_new(out, r);
        }
        return out;
    }
    return json_deep_copy(tmpl);
}

/* The walk of saga_template_refs: returns what fn returned when that was
 * non-zero (the walk stops), else 0; *unterminated records a "${" without
 * its "}". */
static int refs_walk(const json_t *tmpl, const char *where, saga_template_ref_fn fn,
                     void *arg, int *unterminated)
{
    char sub[512];
    int rc;

    if (json_is_string(tmpl)) {
        const char *s = json_string_value(tmpl);
        for (size_t i = 0; s[i] != '\0'; i++) {
            if (s[i] == '$' && s[i + 1] == '$' && s[i + 2] == '{') {
                i += 2;
            } else if (s[i] == '$' && s[i + 1] == '{') {
                const char *end = strchr(s + i + 2, '}');
                if (end == NULL) {
                    /* No '}' follows: nothing more to find in this string. */
                    *unterminated = 1;
                    return fn(NULL, 0, where, arg);
                }
                if ((rc = fn(s + i + 2, (size_t)(end - (s + i + 2)), where, arg)) != 0)
                    return rc;
                i = (size_t)(end - s);
            }
        }
    } else if (json_is_object(tmpl)) {
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)tmpl, k, v)
        {
            snprintf(sub, sizeof sub, "%s.%s", where, k);
            if ((rc = refs_walk(v, sub, fn, arg, unterminated)) != 0)
                return rc;
        }
    } else if (json_is_array(tmpl)) {
        size_t i;
        json_t *v;
        json_array_foreach(tmpl, i, v)
        {
            snprintf(sub, sizeof sub, "%s[%zu]", where, i);
            if ((rc = refs_walk(v, sub, fn, arg, unterminated)) != 0)
                return rc;
        }
    }
    return 0;
}

int saga_template_refs(const json_t *tmpl, const char *where, saga_template_ref_fn fn,
                       void *arg)
{
    int unterminated = 0, rc = refs_walk(tmpl, where, fn, arg, &unterminated);
    return rc != 0 ? rc : unterminated ? -1 : 0;
}
