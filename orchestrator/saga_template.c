/* Template resolution for step inputs. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "saga_template.h"

/* Look up a path like "steps.a.output.items[0].sku" in ctx. Returns a
 * borrowed reference or NULL; *bad is set when the path is malformed. */
static json_t *lookup(const json_t *ctx, const char *path, size_t len, int *bad)
{
    json_t *cur = (json_t *)ctx;
    size_t i = 0;
    char key[256];

    *bad = 0;
    if (len == 0) {
        *bad = 1;
        return NULL;
    }
    while (i < len) {
        size_t k = 0;
        if (path[i] == '[') {
            char *end;
            long idx;
            i++;
            if (i >= len || !isdigit((unsigned char)path[i])) {
                *bad = 1;
                return NULL;
            }
            idx = strtol(path + i, &end, 10);
            i = (size_t)(end - path);
            if (i >= len || path[i] != ']') {
                *bad = 1;
                return NULL;
            }
            i++;
            if (!json_is_array(cur))
                return NULL;
            cur = json_array_get(cur, (size_t)idx);
        } else {
            while (i < len && path[i] != '.' && path[i] != '[') {
                if (k + 1 >= sizeof key) {
                    *bad = 1;
                    return NULL;
                }
                key[k++] = path[i++];
            }
            key[k] = '\0';
            if (k == 0) {
                *bad = 1;
                return NULL;
            }
            if (!json_is_object(cur))
                return NULL;
            cur = json_object_get(cur, key);
        }
        if (cur == NULL)
            return NULL;
        if (i < len && path[i] == '.') {
            i++;
            if (i >= len) {
                *bad = 1;
                return NULL;
            }
        }
    }
    return cur;
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
    int bad;

    /* Whole-value reference: keep the JSON type. */
    if (n >= 3 && s[0] == '$' && s[1] == '{' && s[n - 1] == '}' &&
        memchr(s + 2, '}', n - 3) == NULL && strstr(s + 2, "${") == NULL) {
        json_t *v = lookup(ctx, s + 2, n - 3, &bad);
        if (v == NULL) {
            saga_error_set(err, bad ? SAGA_EDEF : SAGA_ENOTFOUND,
                           bad ? "malformed reference \"%s\""
                               : "reference \"%s\" resolved to nothing",
                           s);
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
                saga_error_set(err, SAGA_EDEF, "unterminated \"${\" in \"%s\"", s);
                free(b.p);
                return NULL;
            }
            v = lookup(ctx, s + i + 2, (size_t)(end - (s + i + 2)), &bad);
            if (v == NULL) {
                saga_error_set(err, bad ? SAGA_EDEF : SAGA_ENOTFOUND,
                               bad ? "malformed reference \"${%.*s}\""
                                   : "reference \"${%.*s}\" resolved to nothing",
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
    saga_error_set(err, SAGA_ENOMEM, "out of memory");
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

int saga_template_refs(const json_t *tmpl, const char *where, saga_template_ref_fn fn,
                       void *arg)
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
                char path[256];
                if (end == NULL) {
                    fn(NULL, where, arg);
                    return -1;
                }
                snprintf(path, sizeof path, "%.*s", (int)(end - (s + i + 2)), s + i + 2);
                if ((rc = fn(path, where, arg)) != 0)
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
            if ((rc = saga_template_refs(v, sub, fn, arg)) != 0)
                return rc;
        }
    } else if (json_is_array(tmpl)) {
        size_t i;
        json_t *v;
        json_array_foreach(tmpl, i, v)
        {
            snprintf(sub, sizeof sub, "%s[%zu]", where, i);
            if ((rc = saga_template_refs(v, sub, fn, arg)) != 0)
                return rc;
        }
    }
    return 0;
}
