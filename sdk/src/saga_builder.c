/* The definition builder: a thin layer that writes the definition's JSON
 * as it is declared, so that the result is the file format itself. */
#include <stdlib.h>
#include <string.h>

#include "saga/builder.h"

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

static int set_str(json_t *obj, const char *key, const char *value)
{
    if (obj == NULL || value == NULL || *value == '\0')
        return SAGA_EINVAL;
    return json_object_set_new(obj, key, json_string(value)) == 0 ? SAGA_OK : SAGA_ENOMEM;
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

/* Whole numbers stay integers, as a person writes them in a file. */
static json_t *number(double v)
{
    return v == (double)(json_int_t)v ? json_integer((json_int_t)v) : json_real(v);
}

static json_t *retry_obj(const saga_retry_spec *spec)
{
    json_t *o = json_object();
    if (o == NULL)
        return NULL;
    if (spec->max_attempts > 0)
        json_object_set_new(o, "max_attempts", json_integer(spec->max_attempts));
    if (spec->backoff != NULL)
        json_object_set_new(o, "backoff", json_string(spec->backoff));
    if (spec->max_backoff != NULL)
        json_object_set_new(o, "max_backoff", json_string(spec->max_backoff));
    if (spec->multiplier > 0)
        json_object_set_new(o, "multiplier", number(spec->multiplier));
    if (spec->jitter >= 0)
        json_object_set_new(o, "jitter", number(spec->jitter));
    return o;
}

static int set_retry(json_t *parent, const char *key, const saga_retry_spec *spec)
{
    json_t *o;
    if (parent == NULL || spec == NULL)
        return SAGA_EINVAL;
    o = retry_obj(spec);
    return o != NULL && json_object_set_new(parent, key, o) == 0 ? SAGA_OK : SAGA_ENOMEM;
}

int saga_def_description(saga_def *d, const char *text)
{
    return d ? set_str(d->obj, "description", text) : SAGA_EINVAL;
}

int saga_def_deadline(saga_def *d, const char *duration)
{
    return d ? set_str(d->obj, "deadline", duration) : SAGA_EINVAL;
}

int saga_def_default_timeout(saga_def *d, const char *duration)
{
    return d ? set_str(defaults(d), "timeout", duration) : SAGA_EINVAL;
}

int saga_def_default_retry(saga_def *d, const saga_retry_spec *spec)
{
    return d ? set_retry(defaults(d), "retry", spec) : SAGA_EINVAL;
}

int saga_def_default_compensation_retry(saga_def *d, const saga_retry_spec *spec)
{
    return d ? set_retry(defaults(d), "compensation_retry", spec) : SAGA_EINVAL;
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
    if (s == NULL || (compensation != NULL && *compensation == '\0'))
        return SAGA_EINVAL;
    return json_object_set_new(step_obj(s), "compensation",
                               compensation ? json_string(compensation) : json_null()) ==
                   0
               ? SAGA_OK
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
    return s ? set_retry(step_obj(s), "retry", spec) : SAGA_EINVAL;
}

int saga_def_step_compensation_retry(saga_def_step *s, const saga_retry_spec *spec)
{
    return s ? set_retry(step_obj(s), "compensation_retry", spec) : SAGA_EINVAL;
}

int saga_def_step_description(saga_def_step *s, const char *text)
{
    return s ? set_str(step_obj(s), "description", text) : SAGA_EINVAL;
}

int saga_def_step_group(saga_def_step *s, const char *group)
{
    return s ? set_str(step_obj(s), "group", group) : SAGA_EINVAL;
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
        return saga_error_set(err, SAGA_EINVAL, "definition and path must be given");
    if (json_dump_file(d->obj, path, JSON_INDENT(2) | JSON_PRESERVE_ORDER) != 0)
        return saga_error_set(err, SAGA_EIO, "cannot write %s", path);
    return SAGA_OK;
}
