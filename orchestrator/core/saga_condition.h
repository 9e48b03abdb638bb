/* saga_condition.h - a step's "when": a small boolean language over the
 * saga's data, parsed once when the definition is loaded and evaluated
 * when the step's turn comes (docs/DEFINITIONS.md, "Conditions"):
 *
 *   expr    := or
 *   or      := and { "or" and }
 *   and     := not { "and" not }
 *   not     := "not" not | compare
 *   compare := value [ ("==" | "!=" | "<" | "<=" | ">" | ">=") value ]
 *   value   := "(" expr ")" | "exists" "(" REF ")" | REF | NUMBER | STRING
 *              | "true" | "false" | "null"
 *
 * REF is ${input...}, ${steps.NAME.output...} or ${saga...}, as in step
 * inputs; a STRING is in '...' or "..." with \ escaping the quote or \.
 * No loops, no calls, no assignment: an expression is a tree, evaluated
 * once, bounded in size and depth. Pure; any thread. */
#ifndef SAGA_CONDITION_H
#define SAGA_CONDITION_H

#include <stddef.h>

#include <jansson.h>

#include "saga/error.h"

/* Expressions longer or deeper than these are refused when parsed. */
#define SAGA_CONDITION_MAX_BYTES 2000
#define SAGA_CONDITION_MAX_DEPTH 32

typedef struct saga_condition saga_condition;

/* Parse text. SAGA_OK with *out (the caller's: saga_condition_free), or
 * SAGA_EDEF with *column (1-based, in text) and why saying what was
 * expected there; SAGA_ENOMEM. */
int saga_condition_parse(const char *text, saga_condition **out, int *column, char *why,
                         size_t why_size);

void saga_condition_free(saga_condition *c);

/* Call fn for each reference (the text inside ${...}, len bytes, and its
 * 1-based column); stops at, and returns, the first non-zero fn returns. */
typedef int (*saga_condition_ref_fn)(const char *path, size_t len, int column, void *arg);
int saga_condition_refs(const saga_condition *c, saga_condition_ref_fn fn, void *arg);

/* Evaluate against ctx ({"input", "steps": {NAME: {"output"}}, "saga"}):
 * 1 true, 0 false. A reference to nothing (a step that did not run, a
 * missing field) is "missing": every comparison with it is false except
 * !=, and exists() is false for it and for null. A value standing alone
 * is true only when it is the boolean true. Numbers compare as numbers
 * (as doubles: integers beyond 2^53 may compare equal), strings byte by
 * byte; < and > between other kinds are false; == and != compare other
 * JSON values by content (inside an object or array, 1 and 1.0 differ). */
int saga_condition_eval(const saga_condition *c, const json_t *ctx);

#endif
