/* Step inputs built from the saga's input and earlier steps' outputs.
 *
 * A string that is exactly "${ref}" is replaced by the referenced value,
 * keeping its JSON type. "${ref}" inside a longer string is interpolated
 * (strings as-is, other values as compact JSON). "$${" is a literal "${".
 * A ref is a dotted path with optional [N] indexes, rooted at `input`,
 * `steps.NAME.output` or `saga` (id, name, version). */
#ifndef SAGA_TEMPLATE_H
#define SAGA_TEMPLATE_H

#include <jansson.h>

#include "saga/error.h"

/* Resolve tmpl against ctx ({"input":..., "steps":{NAME:{"output":...}},
 * "saga":{...}}). Returns a new reference (caller decrefs), or NULL with err
 * naming the reference that resolved to nothing (SAGA_ENOTFOUND) or a
 * malformed one (SAGA_EDEF, saying what is wrong with it). */
json_t *saga_template_resolve(const json_t *tmpl, const json_t *ctx, saga_error *err);

/* One segment of a reference path: a field name or an array index. */
typedef struct saga_ref_seg {
    const char *key; /* the field name, key_len bytes (not NUL-terminated); NULL
                        for an index */
    size_t key_len;
    size_t index; /* the index, when key is NULL */
} saga_ref_seg;

/* Parse a reference path (the len bytes inside ${...}): field names
 * separated by '.', each optionally followed by [N] indexes. Returns the
 * number of segments (the first max of them stored in segs, which may be
 * NULL when max is 0), or -1 when the path is malformed, with a sentence
 * saying what is wrong in why. The resolver uses this same parser, so a
 * path the validator accepted is never malformed at run time. */
int saga_template_parse_ref(const char *path, size_t len, saga_ref_seg *segs, int max,
                            char *why, size_t why_size);

/* The value the reference path (len bytes, the text inside ${...}) names
 * in ctx, borrowed; NULL when it names nothing or is malformed. */
const json_t *saga_template_lookup(const json_t *ctx, const char *path, size_t len);

/* Call fn for every reference in tmpl: path is the text inside ${...}, len
 * bytes (not NUL-terminated), where the JSON path of the string within
 * tmpl. An unterminated "${" is reported as path NULL and the walk goes on,
 * so that every problem is found. Returns the first non-zero value fn
 * returns (the walk stops there); otherwise -1 if some "${" was
 * unterminated, else 0. */
typedef int (*saga_template_ref_fn)(const char *path, size_t len, const char *where,
                                    void *arg);
int saga_template_refs(const json_t *tmpl, const char *where, saga_template_ref_fn fn,
                       void *arg);

#endif
