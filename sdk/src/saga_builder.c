/* The definition builder: a thin layer that writes the definition's JSON
 * as it is declared, so that the result is the file format itself. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "saga/builder.h"
#include "saga_shared.h"

struct saga_def {
    json_t *obj;
};

/* A step handle is the step's JSON object (borrowed from the array). */
struct saga_def_step {
    json_t obj;
};

static json_t *step_obj(saga_def_step *s)
{
    return (json_t *)s;
}

/* json_string() returns NULL both when out of memory and for text that is
 * not UTF-8; the caller's mistake must not be reported as SAGA_ENOMEM. */
static int new_string(const char *value, json_t **out)
{
    json_t *raw;
    if ((*out = json_string(value)) != NULL)
        return SAGA_OK;
    raw = json_string_nocheck(value);
    json_decref(raw);
    return raw != NULL ? SAGA_EINVAL : SAGA_ENOMEM;
}

static int set_str(json_t *obj, const char *key, const char *value)
{
    json_t *v;
    int rc;
    if (obj == NULL || value == NULL || *value == '\0')
        return SAGA_EINVAL;
    if ((rc = new_string(value, &v)) != SAGA_OK)
        return rc;
    return json_object_set_new(obj, key, v) == 0 ? SAGA_OK : SAGA_ENOMEM;
}

saga_def *saga_def_new(const char *name)
{
    saga_def *d;
    if (name == NULL || *name == '\0')
        return NULL;
    d = calloc(1, sizeof *d);
    if (d == NULL)
        return NULL;
    d->obj = json_pack("{s:s, s:[]}", "name", name, "steps");
    if (d->obj == NULL) {
        free(d);
        return NULL;
    }
    return d;
}

void saga_def_free(saga_def *d)
{
    if (d == NULL)
        return;
    json_decref(d->obj);
    free(d);
}

/* The "defaults" object, created on first use; NULL only when out of
 * memory, so that callers can tell SAGA_ENOMEM from SAGA_EINVAL (they
 * check their arguments before, and clean up after, see defaults_done). */
static json_t *defaults(saga_def *d)
{
    json_t *o = json_object_get(d->obj, "defaults");
    if (o == NULL) {
        o = json_object();
        if (o == NULL || json_object_set_new(d->obj, "defaults", o) != 0)
            return NULL;
    }
    return o;
}

/* Whole numbers stay integers, as a person writes them in a file. Only
 * values a double holds exactly as an integer (|v| <= 2^53) are converted:
 * the cast of a larger value, or of NaN, would be undefined. NULL for NaN
 * and infinities, which JSON cannot hold. */
static json_t *number(double v)
{
    if (!isfinite(v))
        return NULL;
    if (fabs(v) <= 9007199254740992.0 && v == floor(v))
        return json_integer((json_int_t)v);
    return json_real(v);
}

static int set_new(json_t *o, const char *key, json_t *v)
{
    return v != NULL && json_object_set_new(o, key, v) == 0 ? SAGA_OK : SAGA_ENOMEM;
}

/* The policy as JSON into *out; SAGA_EINVAL for a multiplier or jitter
 * that is not a finite number. */
static int retry_obj(const saga_retry_spec *spec, json_t **out)
{
    json_t *o, *v;
    int rc = SAGA_OK;
    *out = NULL;
    if (!isfinite(spec->multiplier) || !isfinite(spec->jitter))
        return SAGA_EINVAL;
    if ((o = json_object()) == NULL)
        return SAGA_ENOMEM;
    if (spec->max_attempts > 0)
        rc = set_new(o, "max_attempts", json_integer(spec->max_attempts));
    if (rc == SAGA_OK && spec->backoff != NULL &&
        (rc = new_string(spec->backoff, &v)) == 0)
        rc = set_new(o, "backoff", v);
    if (rc == SAGA_OK && spec->max_backoff != NULL &&
        (rc = new_string(spec->max_backoff, &v)) == 0)
        rc = set_new(o, "max_backoff", v);
    if (rc == SAGA_OK && spec->multiplier > 0)
        rc = set_new(o, "multiplier", number(spec->multiplier));
    if (rc == SAGA_OK && spec->jitter >= 0)
        rc = set_new(o, "jitter", number(spec->jitter));
    if (rc != SAGA_OK) {
        json_decref(o);
        return rc;
    }
    *out = o;
    return SAGA_OK;
}

static int set_retry(json_t *parent, const char *key, const saga_retry_spec *spec)
{
    json_t *o;
    int rc = retry_obj(spec, &o);
    return rc != SAGA_OK ? rc : set_new(parent, key, o);
}

int saga_def_description(saga_def *d, const char *text)
{
    return d ? set_str(d->obj, "description", text) : SAGA_EINVAL;
}

int saga_def_deadline(saga_def *d, const char *duration)
{
    return d ? set_str(d->obj, "deadline", duration) : SAGA_EINVAL;
}

/* A failed setter leaves no "defaults" object it created for nothing. */
static int defaults_done(saga_def *d, int rc)
{
    json_t *o = json_object_get(d->obj, "defaults");
    if (rc != SAGA_OK && o != NULL && json_object_size(o) == 0)
        json_object_del(d->obj, "defaults");
    return rc;
}

int saga_def_default_timeout(saga_def *d, const char *duration)
{
    json_t *o;
    if (d == NULL || duration == NULL || *duration == '\0')
        return SAGA_EINVAL;
    if ((o = defaults(d)) == NULL)
        return SAGA_ENOMEM;
    return defaults_done(d, set_str(o, "timeout", duration));
}

int saga_def_default_retry(saga_def *d, const saga_retry_spec *spec)
{
    json_t *o;
    if (d == NULL || spec == NULL)
        return SAGA_EINVAL;
    if ((o = defaults(d)) == NULL)
        return SAGA_ENOMEM;
    return defaults_done(d, set_retry(o, "retry", spec));
}

int saga_def_default_compensation_retry(saga_def *d, const saga_retry_spec *spec)
{
    json_t *o;
    if (d == NULL || spec == NULL)
        return SAGA_EINVAL;
    if ((o = defaults(d)) == NULL)
        return SAGA_ENOMEM;
    return defaults_done(d, set_retry(o, "compensation_retry", spec));
}

saga_def_step *saga_def_add_step(saga_def *d, const char *name, const char *service,
                                 const char *action)
{
    json_t *s;
    if (d == NULL || name == NULL || *name == '\0' || service == NULL ||
        *service == '\0' || action == NULL || *action == '\0')
        return NULL;
    s = json_pack("{s:s, s:s, s:s}", "name", name, "service", service, "action", action);
    if (s == NULL || json_array_append_new(json_object_get(d->obj, "steps"), s) != 0)
        return NULL;
    return (saga_def_step *)s;
}

int saga_def_step_compensation(saga_def_step *s, const char *compensation)
{
    json_t *v = NULL;
    int rc;
    if (s == NULL || (compensation != NULL && *compensation == '\0'))
        return SAGA_EINVAL;
    if (compensation == NULL)
        v = json_null();
    else if ((rc = new_string(compensation, &v)) != SAGA_OK)
        return rc;
    return json_object_set_new(step_obj(s), "compensation", v) == 0 ? SAGA_OK
                                                                    : SAGA_ENOMEM;
}

int saga_def_step_input(saga_def_step *s, json_t *input)
{
    if (s == NULL || !json_is_object(input)) {
        json_decref(input);
        return SAGA_EINVAL;
    }
    return json_object_set_new(step_obj(s), "input", input) == 0 ? SAGA_OK : SAGA_ENOMEM;
}

int saga_def_step_timeout(saga_def_step *s, const char *duration)
{
    return s ? set_str(step_obj(s), "timeout", duration) : SAGA_EINVAL;
}

int saga_def_step_retry(saga_def_step *s, const saga_retry_spec *spec)
{
    return s && spec ? set_retry(step_obj(s), "retry", spec) : SAGA_EINVAL;
}

int saga_def_step_compensation_retry(saga_def_step *s, const saga_retry_spec *spec)
{
    return s && spec ? set_retry(step_obj(s), "compensation_retry", spec) : SAGA_EINVAL;
}

int saga_def_step_description(saga_def_step *s, const char *text)
{
    return s ? set_str(step_obj(s), "description", text) : SAGA_EINVAL;
}

int saga_def_step_group(saga_def_step *s, const char *group)
{
    return s ? set_str(step_obj(s), "group", group) : SAGA_EINVAL;
}

int saga_def_step_when(saga_def_step *s, const char *condition)
{
    return s ? set_str(step_obj(s), "when", condition) : SAGA_EINVAL;
}

int saga_def_step_for_each(saga_def_step *s, const char *list_ref, int concurrency,
                           int max_elements)
{
    int rc;
    if (s == NULL || list_ref == NULL || concurrency < 0 || max_elements < 0)
        return SAGA_EINVAL;
    if ((rc = set_str(step_obj(s), "for_each", list_ref)) != SAGA_OK)
        return rc;
    if (concurrency > 0 &&
        json_object_set_new(step_obj(s), "concurrency", json_integer(concurrency)) != 0)
        return SAGA_ENOMEM;
    if (max_elements > 0 &&
        json_object_set_new(step_obj(s), "max_elements", json_integer(max_elements)) != 0)
        return SAGA_ENOMEM;
    return SAGA_OK;
}

saga_def_step *saga_def_add_wait(saga_def *d, const char *name, const char *signal,
                                 const char *timeout, json_t *default_output)
{
    json_t *s, *w;
    if (d == NULL || name == NULL || *name == '\0' || signal == NULL || *signal == '\0' ||
        (timeout != NULL && *timeout == '\0') ||
        (default_output != NULL &&
         (!json_is_object(default_output) || timeout == NULL))) {
        json_decref(default_output);
        return NULL;
    }
    w = json_pack("{s:s}", "signal", signal);
    if (w != NULL && timeout != NULL)
        json_object_set_new(w, "timeout", json_string(timeout));
    if (w != NULL && default_output != NULL)
        json_object_set(w, "default", default_output);
    json_decref(default_output);
    s = w != NULL ? json_pack("{s:s, s:o}", "name", name, "wait", w) : NULL;
    if (s == NULL || json_array_append_new(json_object_get(d->obj, "steps"), s) != 0)
        return NULL;
    return (saga_def_step *)s;
}

saga_def_step *saga_def_add_child(saga_def *d, const char *name, const char *definition)
{
    json_t *s;
    if (d == NULL || name == NULL || *name == '\0' || definition == NULL ||
        *definition == '\0')
        return NULL;
    s = json_pack("{s:s, s:s}", "name", name, "child", definition);
    if (s == NULL || json_array_append_new(json_object_get(d->obj, "steps"), s) != 0)
        return NULL;
    return (saga_def_step *)s;
}

int saga_def_step_pivot(saga_def_step *s, int pivot)
{
    if (s == NULL)
        return SAGA_EINVAL;
    return json_object_set_new(step_obj(s), "pivot", json_boolean(pivot)) == 0
               ? SAGA_OK
               : SAGA_ENOMEM;
}

json_t *saga_def_to_json(const saga_def *d)
{
    return d != NULL ? json_deep_copy(d->obj) : NULL;
}

int saga_def_write_file(const saga_def *d, const char *path, saga_error *err)
{
    if (d == NULL || path == NULL)
        return saga__error_set(err, SAGA_EINVAL, "definition and path must be given");
    if (json_dump_file(d->obj, path, JSON_INDENT(2) | JSON_PRESERVE_ORDER) != 0)
        return saga__error_set(err, SAGA_EIO, "cannot write %s", path);
    return SAGA_OK;
}
