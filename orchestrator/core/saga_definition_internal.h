/* saga_definition_internal.h - what the definition parser's files share
 * (not for callers: saga_definition.h is the interface). Calls go one way:
 * saga_definition.c -> steps -> fields -> problems. Pure. */
#ifndef SAGA_DEFINITION_INTERNAL_H
#define SAGA_DEFINITION_INTERNAL_H

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "saga_definition.h"
#include "saga_shared.h"
#include "saga_duration.h"
#include "saga_template.h"

/* Where a policy's backoff and max_backoff came from, so that a message
 * comparing them can say which setting to change. */
typedef struct retry_from {
    char backoff[320];
    char max_backoff[320];
} retry_from;

/* Every string value and key over SAGA_DEF_MAX_STRING_BYTES, each with
 * where it is. One path buffer for the whole walk (nesting may be deep). */
typedef struct string_walk {
    char path[256];
    saga_def_problems *p;
} string_walk;

#define BUILTIN_DEFAULT "the built-in default"

/* Reference checking: which steps may a step's input name? */
typedef struct ref_check {
    const saga_definition *def;
    int step;
    saga_def_problems *p;
    /* ${element...} and ${index} may be named: a fan-out step's input. */
    int elements;
} ref_check;

/* The policies a step inherits, with where each of their durations was set. */
typedef struct step_defaults {
    saga_retry_policy retry, comp;
    retry_from retry_from, comp_from;
    int64_t timeout_ms;
} step_defaults;

/* ---- saga_definition_problems.c ---- */

void saga__def_problem(saga_def_problems *p, const char *where, const char *fmt, ...);

void saga__def_rule(saga_def_problems *p, const char *where, const char *fmt, ...);

const char *saga__def_type_name(const json_t *v);

const char *saga__def_describe(const json_t *v, char *buf, size_t size);

int64_t saga__def_max_bytes_of(const saga_def_problems *p);

void saga__def_long_strings(string_walk *w, size_t len, json_t *v);

/* ---- saga_definition_fields.c ---- */

void saga__def_check_keys(json_t *obj, const char *where, const char *const *allowed,
                          const char *skip, saga_def_problems *p);

char *saga__def_get_string(json_t *obj, const char *key, const char *where, int required,
                           int ident, saga_def_problems *p);

int saga__def_get_duration(json_t *obj, const char *key, const char *where, int64_t *out,
                           saga_def_problems *p);

/* A number at obj.key within [lo, hi] (an integer if integer) into *out:
 * 1; absent or refused (a problem says what was found): 0. */
int saga__def_get_number(json_t *obj, const char *key, const char *where, double lo,
                         double hi, int integer, double *out, saga_def_problems *p);

void saga__def_get_retry(json_t *obj, const char *key, const char *where,
                         saga_retry_policy *r, retry_from *from, saga_def_problems *p);

/* ---- saga_definition_steps.c ---- */

void saga__def_parse_step(json_t *s, int i, saga_definition *def,
                          const step_defaults *dflt, saga_def_problems *p);

void saga__def_check_steps(saga_definition *def, json_t *steps, saga_def_problems *p);

/* ---- saga_definition_child.c ---- */

/* A child step: {"name", "child": DEFINITION, "input"?, "when"?,
 * "group"?, "pivot"?, "description"?}; the keys of a step a service runs
 * are refused, each saying why. */
void saga__def_parse_child(json_t *s, const char *where, saga_step_def *st,
                           saga_def_problems *p);

/* ---- saga_definition_fanout.c ---- */

/* A step's "for_each", "concurrency" and "max_elements" (a wait step's
 * are refused by its own parser). */
void saga__def_parse_fanout(json_t *s, const char *where, saga_step_def *st,
                            saga_def_problems *p);

/* The rules between a fan-out step and the others (the pivot, its list's
 * reference: a list of the input or of an earlier step's output). check
 * is the reference checker of saga_definition_steps.c. */
void saga__def_check_fanout(saga_definition *def, int i, saga_template_ref_fn check,
                            saga_def_problems *p);

#endif
