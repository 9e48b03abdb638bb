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
 * malformed one (SAGA_EDEF). */
json_t *saga_template_resolve(const json_t *tmpl, const json_t *ctx, saga_error *err);

/* Call fn for every reference in tmpl (path is the text inside ${...},
 * where is the JSON path of the string within tmpl). Stops at, and returns,
 * the first non-zero value fn returns; returns -1 for an unterminated
 * "${" (fn is then called with path NULL). */
typedef int (*saga_template_ref_fn)(const char *path, const char *where, void *arg);
int saga_template_refs(const json_t *tmpl, const char *where, saga_template_ref_fn fn,
                       void *arg);

#endif
