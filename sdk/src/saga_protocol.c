/* Encoding and decoding of commands and replies (docs/PROTOCOL.md). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "saga/protocol.h"
#include "saga_shared.h"

const char *saga_phase_name(saga_phase phase)
{
    return phase == SAGA_PHASE_COMPENSATE ? "compensate" : "invoke";
}

int saga_phase_parse(const char *text, saga_phase *out)
{
    if (out == NULL)
        return SAGA_EINVAL;
    if (text != NULL && strcmp(text, "invoke") == 0) {
        *out = SAGA_PHASE_INVOKE;
        return SAGA_OK;
    }
    if (text != NULL && strcmp(text, "compensate") == 0) {
        *out = SAGA_PHASE_COMPENSATE;
        return SAGA_OK;
    }
    return SAGA_EINVAL;
}

const char *saga_reply_status_name(saga_reply_status status)
{
    switch (status) {
    case SAGA_REPLY_OK:
        return "ok";
    case SAGA_REPLY_FAILED:
        return "failed";
    case SAGA_REPLY_RETRY:
        return "retry";
    }
    return "?";
}

int saga_reply_status_parse(const char *text, saga_reply_status *out)
{
    static const char *names[] = {"ok", "failed", "retry"};
    if (out == NULL)
        return SAGA_EINVAL;
    for (int i = 0; i < 3 && text != NULL; i++) {
        if (strcmp(text, names[i]) == 0) {
            *out = (saga_reply_status)i;
            return SAGA_OK;
        }
    }
    return SAGA_EINVAL;
}

int saga_command_id_format(char *buf, size_t size, const char *saga_id, int step,
                           saga_phase phase)
{
    /* snprintf would print "(null)" or crash on NULL, depending on libc. */
    if (saga_id == NULL || (buf == NULL && size > 0))
        return SAGA_EINVAL;
    return snprintf(buf, size, "%s/%d/%s", saga_id, step, saga_phase_name(phase));
}

int saga_command_id_format_element(char *buf, size_t size, const char *saga_id, int step,
                                   saga_phase phase, int element)
{
    if (element < 0)
        return saga_command_id_format(buf, size, saga_id, step, phase);
    if (saga_id == NULL || (buf == NULL && size > 0))
        return SAGA_EINVAL;
    return snprintf(buf, size, "%s/%d/%s/%d", saga_id, step, saga_phase_name(phase),
                    element);
}

static int is_uuid(const char *s)
{
    static const int dash[] = {8, 13, 18, 23};
    if (strlen(s) != SAGA_ID_LEN)
        return 0;
    for (int i = 0, d = 0; i < SAGA_ID_LEN; i++) {
        if (d < 4 && i == dash[d]) {
            if (s[i] != '-')
                return 0;
            d++;
        } else if (!isxdigit((unsigned char)s[i])) {
            return 0;
        }
    }
    return 1;
}

int saga_topic_name_valid(const char *s)
{
    size_t n = 0;
    if (s == NULL || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
        return 0;
    for (; s[n] != '\0'; n++)
        if (!isalnum((unsigned char)s[n]) && s[n] != '.' && s[n] != '_' && s[n] != '-')
            return 0;
    return n > 0 && n <= SAGA_TOPIC_MAX;
}

/* Cut s to at most max bytes without splitting a UTF-8 sequence. */
static void cut_utf8(char *s, size_t max)
{
    size_t n = strlen(s);
    if (n <= max)
        return;
    n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    s[n] = '\0';
}

/* ---- encoding ---- */

static int dump(json_t *obj, char **out, size_t *len, saga_error *err)
{
    char *text;
    if (obj == NULL)
        return saga__error_set(err, SAGA_ENOMEM, "out of memory encoding message");
    text = json_dumps(obj, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref(obj);
    if (text == NULL)
        return saga__error_set(err, SAGA_ENOMEM, "out of memory encoding message");
    *out = text;
    if (len != NULL)
        *len = strlen(text);
    return SAGA_OK;
}

/* The version a message is sent as: 2 for an element's, else 1. */
static int version_of(int v)
{
    return v == SAGA_PROTOCOL_VERSION_ELEMENTS ? v : SAGA_PROTOCOL_VERSION;
}

/* Add "element" to a version 2 message (obj stolen; NULL on failure). */
static json_t *with_element(json_t *obj, int v, int element)
{
    if (obj != NULL && v == SAGA_PROTOCOL_VERSION_ELEMENTS &&
        json_object_set_new(obj, "element", json_integer(element)) != 0) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

int saga_command_encode(const saga_command *c, char **out, size_t *len, saga_error *err)
{
    json_t *payload;
    if (c == NULL || out == NULL)
        return saga__error_set(err, SAGA_EINVAL, "command and out must not be NULL");
    if (c->saga == NULL || c->action == NULL || c->command_id == NULL ||
        c->reply_to == NULL || c->step_name == NULL)
        return saga__error_set(
            err, SAGA_EINVAL,
            "command needs saga, step_name, action, command_id, reply_to");
    if (c->v == SAGA_PROTOCOL_VERSION_ELEMENTS &&
        (c->element < 0 || c->element >= SAGA_ELEMENTS_MAX))
        return saga__error_set(err, SAGA_EINVAL, "element %d out of range [0, %d]",
                               c->element, SAGA_ELEMENTS_MAX - 1);
    payload = c->payload != NULL ? json_incref(c->payload) : json_object();
    return dump(
        with_element(
            json_pack("{s:i, s:s, s:s, s:i, s:i, s:s, s:s, s:s, s:s, s:i, s:I, s:s, s:o}",
                      "v", version_of(c->v), "saga_id", c->saga_id, "saga", c->saga,
                      "saga_version", c->saga_version, "step", c->step, "step_name",
                      c->step_name, "phase", saga_phase_name(c->phase), "action",
                      c->action, "command_id", c->command_id, "attempt", c->attempt,
                      "deadline", (json_int_t)c->deadline, "reply_to", c->reply_to,
                      "payload", payload),
            c->v, c->element),
        out, len, err);
}

int saga_reply_encode(const saga_reply *r, char **out, size_t *len, saga_error *err)
{
    json_t *obj;
    if (r == NULL || out == NULL)
        return saga__error_set(err, SAGA_EINVAL, "reply and out must not be NULL");
    if (r->command_id == NULL)
        return saga__error_set(err, SAGA_EINVAL, "reply needs command_id");
    if (r->v == SAGA_PROTOCOL_VERSION_ELEMENTS &&
        (r->element < 0 || r->element >= SAGA_ELEMENTS_MAX))
        return saga__error_set(err, SAGA_EINVAL, "element %d out of range [0, %d]",
                               r->element, SAGA_ELEMENTS_MAX - 1);
    obj = json_pack("{s:i, s:s, s:i, s:s, s:s, s:i, s:s}", "v", version_of(r->v),
                    "saga_id", r->saga_id, "step", r->step, "phase",
                    saga_phase_name(r->phase), "command_id", r->command_id, "attempt",
                    r->attempt, "status", saga_reply_status_name(r->status));
    obj = with_element(obj, r->v, r->element);
    if (obj == NULL)
        return saga__error_set(err, SAGA_ENOMEM, "out of memory encoding reply");
    if (r->status == SAGA_REPLY_OK) {
        json_object_set_new(obj, "output",
                            r->output != NULL ? json_incref(r->output) : json_object());
    } else {
        json_t *e =
            json_pack("{s:s, s:s}", "code", r->error_code ? r->error_code : "error",
                      "message", r->error_message ? r->error_message : "");
        json_object_set_new(obj, "error", e);
        if (r->status == SAGA_REPLY_RETRY && r->retry_after > 0)
            json_object_set_new(obj, "retry_after", json_integer(r->retry_after));
    }
    return dump(obj, out, len, err);
}

/* ---- decoding ---- */

/* Field readers: each reports the field's name and what was expected. */
static int get_obj_root(const char *buf, size_t len, json_t **root, saga_error *err)
{
    json_error_t jerr;
    if (buf == NULL)
        return saga__error_set(err, SAGA_EPROTO, "empty message");
    if (len > SAGA_MESSAGE_MAX)
        return saga__error_set(err, SAGA_EPROTO,
                               "message of %zu bytes exceeds the %d byte limit", len,
                               SAGA_MESSAGE_MAX);
    *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (*root == NULL)
        return saga__error_set(err, SAGA_EPROTO, "not JSON: %s at line %d column %d",
                               jerr.text, jerr.line, jerr.column);
    if (!json_is_object(*root)) {
        json_decref(*root);
        *root = NULL;
        return saga__error_set(err, SAGA_EPROTO, "message is not a JSON object");
    }
    return SAGA_OK;
}

static int get_int(json_t *root, const char *key, json_int_t min, json_int_t max,
                   json_int_t *out, int required, saga_error *err)
{
    json_t *v = json_object_get(root, key);
    if (v == NULL || json_is_null(v)) {
        if (required)
            return saga__error_set(err, SAGA_EPROTO, "field \"%s\" is missing", key);
        *out = 0;
        return SAGA_OK;
    }
    if (!json_is_integer(v))
        return saga__error_set(err, SAGA_EPROTO, "field \"%s\" must be an integer", key);
    *out = json_integer_value(v);
    if (*out < min || *out > max)
        return saga__error_set(err, SAGA_EPROTO,
                               "field \"%s\" is %lld, out of range [%lld, %lld]", key,
                               (long long)*out, (long long)min, (long long)max);
    return SAGA_OK;
}

/* A string field of at most max bytes (0: no bound). Its value is never
 * quoted: the reason must survive, whatever the value holds. */
static int get_str(json_t *root, const char *key, char **out, int required, size_t max,
                   saga_error *err)
{
    json_t *v = json_object_get(root, key);
    if (v == NULL || json_is_null(v)) {
        if (required)
            return saga__error_set(err, SAGA_EPROTO, "field \"%s\" is missing", key);
        *out = NULL;
        return SAGA_OK;
    }
    if (!json_is_string(v))
        return saga__error_set(err, SAGA_EPROTO, "field \"%s\" must be a string", key);
    if (required && json_string_length(v) == 0)
        return saga__error_set(err, SAGA_EPROTO, "field \"%s\" must not be empty", key);
    if (max > 0 && json_string_length(v) > max)
        return saga__error_set(err, SAGA_EPROTO,
                               "field \"%s\" is %zu bytes long, over the limit of %zu",
                               key, json_string_length(v), max);
    *out = strdup(json_string_value(v));
    if (*out == NULL)
        return saga__error_set(err, SAGA_ENOMEM, "out of memory");
    return SAGA_OK;
}

static int get_common(json_t *root, int *version, int *element,
                      char saga_id[SAGA_ID_LEN + 1], int *step, saga_phase *phase,
                      char **command_id, int *attempt, saga_error *err)
{
    json_int_t n;
    json_t *v;
    const char *s;
    int rc;

    if ((rc = get_int(root, "v", 0, 1000000, &n, 1, err)) != SAGA_OK)
        return rc;
    if (n != SAGA_PROTOCOL_VERSION && n != SAGA_PROTOCOL_VERSION_ELEMENTS)
        return saga__error_set(
            err, SAGA_EPROTO, "field \"v\" is %lld; this side speaks %d and %d",
            (long long)n, SAGA_PROTOCOL_VERSION, SAGA_PROTOCOL_VERSION_ELEMENTS);
    *version = (int)n;
    /* Only a version 2 message has an element; a version 1 message's
     * "element", if any, is not ours to read (as any unknown field). */
    if (n == SAGA_PROTOCOL_VERSION_ELEMENTS) {
        if ((rc = get_int(root, "element", 0, SAGA_ELEMENTS_MAX - 1, &n, 1, err)) !=
            SAGA_OK)
            return rc;
        *element = (int)n;
    }
    v = json_object_get(root, "saga_id");
    if (!json_is_string(v))
        return saga__error_set(err, SAGA_EPROTO, "field \"saga_id\" must be a string");
    s = json_string_value(v);
    if (!is_uuid(s))
        return saga__error_set(err, SAGA_EPROTO,
                               "field \"saga_id\" is not a UUID: \"%.40s\"", s);
    memcpy(saga_id, s, SAGA_ID_LEN + 1);
    if ((rc = get_int(root, "step", 0, 9999, &n, 1, err)) != SAGA_OK)
        return rc;
    *step = (int)n;
    v = json_object_get(root, "phase");
    if (!json_is_string(v) || saga_phase_parse(json_string_value(v), phase) != SAGA_OK)
        return saga__error_set(err, SAGA_EPROTO,
                               "field \"phase\" must be \"invoke\" or \"compensate\"");
    if ((rc = get_str(root, "command_id", command_id, 1, SAGA_COMMAND_ID_MAX, err)) !=
        SAGA_OK)
        return rc;
    if ((rc = get_int(root, "attempt", 1, SAGA_ATTEMPT_MAX, &n, 1, err)) != SAGA_OK)
        return rc;
    *attempt = (int)n;
    return SAGA_OK;
}

int saga_command_decode(const char *buf, size_t len, saga_command *out, saga_error *err)
{
    json_t *root = NULL, *payload;
    json_int_t n;
    int rc;

    if (out == NULL)
        return saga__error_set(err, SAGA_EINVAL, "out must not be NULL");
    memset(out, 0, sizeof *out);
    if ((rc = get_obj_root(buf, len, &root, err)) != SAGA_OK)
        return rc;
    if ((rc = get_common(root, &out->v, &out->element, out->saga_id, &out->step,
                         &out->phase, &out->command_id, &out->attempt, err)) != SAGA_OK)
        goto fail;
    if ((rc = get_str(root, "saga", &out->saga, 1, SAGA_NAME_MAX, err)) != SAGA_OK ||
        (rc = get_str(root, "step_name", &out->step_name, 1, SAGA_NAME_MAX, err)) !=
            SAGA_OK ||
        (rc = get_str(root, "action", &out->action, 1, SAGA_NAME_MAX, err)) != SAGA_OK ||
        (rc = get_str(root, "reply_to", &out->reply_to, 1, SAGA_TOPIC_MAX, err)) !=
            SAGA_OK)
        goto fail;
    if (!saga_topic_name_valid(out->reply_to)) {
        rc = saga__error_set(err, SAGA_EPROTO,
                             "field \"reply_to\" is not a Kafka topic name (letters, "
                             "digits, '.', '_', '-'; not \".\" or \"..\")");
        goto fail;
    }
    if ((rc = get_int(root, "saga_version", 1, 1000000000, &n, 1, err)) != SAGA_OK)
        goto fail;
    out->saga_version = (int)n;
    if ((rc = get_int(root, "deadline", 0, SAGA_DEADLINE_MAX, &n, 0, err)) != SAGA_OK)
        goto fail;
    out->deadline = n;
    payload = json_object_get(root, "payload");
    if (payload == NULL || json_is_null(payload)) {
        out->payload = json_object();
    } else if (!json_is_object(payload)) {
        rc = saga__error_set(err, SAGA_EPROTO, "field \"payload\" must be an object");
        goto fail;
    } else {
        out->payload = json_incref(payload);
    }
    json_decref(root);
    return SAGA_OK;
fail:
    json_decref(root);
    saga_command_clear(out);
    return rc;
}

int saga_reply_decode(const char *buf, size_t len, saga_reply *out, saga_error *err)
{
    json_t *root = NULL, *v;
    json_int_t n;
    int rc;

    if (out == NULL)
        return saga__error_set(err, SAGA_EINVAL, "out must not be NULL");
    memset(out, 0, sizeof *out);
    if ((rc = get_obj_root(buf, len, &root, err)) != SAGA_OK)
        return rc;
    if ((rc = get_common(root, &out->v, &out->element, out->saga_id, &out->step,
                         &out->phase, &out->command_id, &out->attempt, err)) != SAGA_OK)
        goto fail;
    v = json_object_get(root, "status");
    if (!json_is_string(v) ||
        saga_reply_status_parse(json_string_value(v), &out->status) != 0) {
        rc = saga__error_set(err, SAGA_EPROTO,
                             "field \"status\" must be \"ok\", \"failed\" or \"retry\"");
        goto fail;
    }
    v = json_object_get(root, "output");
    if (v != NULL && !json_is_null(v)) {
        if (!json_is_object(v)) {
            rc = saga__error_set(err, SAGA_EPROTO, "field \"output\" must be an object");
            goto fail;
        }
        out->output = json_incref(v);
    }
    v = json_object_get(root, "error");
    if (v != NULL && !json_is_null(v)) {
        if (!json_is_object(v)) {
            rc = saga__error_set(err, SAGA_EPROTO, "field \"error\" must be an object");
            goto fail;
        }
        if ((rc = get_str(v, "code", &out->error_code, 0, SAGA_NAME_MAX, err)) !=
                SAGA_OK ||
            (rc = get_str(v, "message", &out->error_message, 0, 0, err)) != SAGA_OK) {
            /* name the nesting so the message says where */
            if (err != NULL) {
                char tmp[sizeof err->message];
                memcpy(tmp, err->message, sizeof tmp);
                snprintf(err->message, sizeof err->message, "in \"error\": %.480s", tmp);
            }
            goto fail;
        }
    }
    if (out->error_message != NULL)
        cut_utf8(out->error_message, SAGA_ERROR_MESSAGE_MAX);
    if ((rc = get_int(root, "retry_after", 0, SAGA_RETRY_AFTER_MAX, &n, 0, err)) !=
        SAGA_OK)
        goto fail;
    out->retry_after = n;
    json_decref(root);
    return SAGA_OK;
fail:
    json_decref(root);
    saga_reply_clear(out);
    return rc;
}

void saga_command_clear(saga_command *c)
{
    if (c == NULL)
        return;
    free(c->saga);
    free(c->step_name);
    free(c->action);
    free(c->command_id);
    free(c->reply_to);
    free(c->traceparent);
    json_decref(c->payload);
    memset(c, 0, sizeof *c);
}

void saga_reply_clear(saga_reply *r)
{
    if (r == NULL)
        return;
    free(r->command_id);
    free(r->error_code);
    free(r->error_message);
    json_decref(r->output);
    memset(r, 0, sizeof *r);
}
