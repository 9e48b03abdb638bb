/* libsaga: declare a saga definition in C. The builder yields the same JSON
 * as a definition file (docs/DEFINITIONS.md); deploy it with `sagactl defs
 * deploy` or put the file in sagad's folder.
 *
 * Errors: every setter returns SAGA_OK, SAGA_EINVAL (a NULL handle or
 * argument, an empty string, text that is not UTF-8, or what the function
 * says below) or SAGA_ENOMEM (allocation failed); a call that fails leaves
 * the definition as it was. The builder checks only what it needs to write
 * JSON: the rules of the format (durations, ranges, references, ...) are
 * checked where definitions are loaded — sagactl validate, defs deploy and
 * sagad — or by saga_def_write_file() followed by `sagactl validate`.
 *
 * Threads: a saga_def and its step handles belong to one thread at a time
 * (no locking inside); different definitions may be built in different
 * threads at once. saga_def_to_json() returns an independent copy. */
#ifndef SAGA_BUILDER_H
#define SAGA_BUILDER_H

#include <jansson.h>

#include "saga/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct saga_def saga_def; /* a definition being built */
typedef struct saga_def_step
    saga_def_step; /* one of its steps (owned by the definition) */

/* A retry policy; fields left at their SAGA_RETRY_SPEC_INIT values are not
 * written (the defaults apply). A multiplier or jitter that is NaN or
 * infinite makes the setter return SAGA_EINVAL. */
typedef struct saga_retry_spec {
    int max_attempts;        /* 0: not set */
    const char *backoff;     /* duration, NULL: not set */
    const char *max_backoff; /* duration, NULL: not set */
    double multiplier;       /* 0: not set */
    double jitter;           /* < 0: not set */
} saga_retry_spec;

#define SAGA_RETRY_SPEC_INIT                                                             \
    {                                                                                    \
        0, NULL, NULL, 0.0, -1.0                                                         \
    }

/* A new definition named name; NULL when name is NULL, empty or not UTF-8,
 * or on allocation failure. The caller frees it with saga_def_free(). */
SAGA_API saga_def *saga_def_new(const char *name);
/* Frees d and its step handles; NULL is ignored. */
SAGA_API void saga_def_free(saga_def *d);

/* Top-level "description" and "deadline" (a duration such as "5m"). */
SAGA_API int saga_def_description(saga_def *d, const char *text);
SAGA_API int saga_def_deadline(saga_def *d, const char *duration);
/* "defaults": the timeout and the policies of steps that set none. A
 * second call replaces what the first wrote. */
SAGA_API int saga_def_default_timeout(saga_def *d, const char *duration);
SAGA_API int saga_def_default_retry(saga_def *d, const saga_retry_spec *spec);
SAGA_API int saga_def_default_compensation_retry(saga_def *d,
                                                 const saga_retry_spec *spec);

/* Append a step; the handle stays valid until saga_def_free(). NULL when d
 * is NULL, an argument is NULL, empty or not UTF-8, or on allocation
 * failure. */
SAGA_API saga_def_step *saga_def_add_step(saga_def *d, const char *name,
                                          const char *service, const char *action);
/* The compensation's name; NULL declares that there is nothing to undo
 * (written as "compensation": null). Without this call the step has no
 * compensation key at all: it is irreversible. */
SAGA_API int saga_def_step_compensation(saga_def_step *s, const char *compensation);
/* The step's input template (a JSON object; stolen, also on failure).
 * SAGA_EINVAL when input is not an object. */
SAGA_API int saga_def_step_input(saga_def_step *s, json_t *input);
/* The step's own timeout (a duration) and policies, over the defaults. */
SAGA_API int saga_def_step_timeout(saga_def_step *s, const char *duration);
SAGA_API int saga_def_step_retry(saga_def_step *s, const saga_retry_spec *spec);
SAGA_API int saga_def_step_compensation_retry(saga_def_step *s,
                                              const saga_retry_spec *spec);
SAGA_API int saga_def_step_description(saga_def_step *s, const char *text);
/* Writes "pivot": true when pivot is non-zero, else "pivot": false. */
SAGA_API int saga_def_step_pivot(saga_def_step *s, int pivot);
/* Run with the adjacent steps of the same group, in parallel. */
SAGA_API int saga_def_step_group(saga_def_step *s, const char *group);
/* (0.4.0) Run the step only when condition (docs/DEFINITIONS.md,
 * "Conditions") is true at its turn; checked when the definition is
 * loaded. */
SAGA_API int saga_def_step_when(saga_def_step *s, const char *condition);
/* (0.5.0) Run the step once per element of the list that list_ref names
 * (one reference, such as "${input.items}"; docs/DEFINITIONS.md,
 * "Fan-out"), at most concurrency elements at a time, and fail it for a
 * list longer than max_elements; 0 for either: the default (the key is
 * not written). Checked when the definition is loaded. SAGA_EINVAL for
 * NULL s or list_ref or a negative number. */
SAGA_API int saga_def_step_for_each(saga_def_step *s, const char *list_ref,
                                    int concurrency, int max_elements);
/* (0.4.0) Append a wait step: it sends nothing and waits for the signal
 * named signal (docs/DEFINITIONS.md, "Waiting for a signal"), at most
 * timeout (a duration; NULL: as long as it takes); at the timeout its
 * output is default_output (an object, stolen, also on failure; NULL: the
 * step fails instead). when, description and group apply to it too. NULL
 * as for saga_def_add_step, and for a default without a timeout. */
SAGA_API saga_def_step *saga_def_add_wait(saga_def *d, const char *name,
                                          const char *signal, const char *timeout,
                                          json_t *default_output);

/* (0.5.0) Append a child step: it starts the latest version of the saga
 * definition named definition as a saga of its own, with the step's input
 * (saga_def_step_input), and ends with it (docs/DEFINITIONS.md, "Child
 * sagas"); undoing it undoes the child. when, description, group and pivot
 * apply to it too. NULL for NULL or empty arguments. */
SAGA_API saga_def_step *saga_def_add_child(saga_def *d, const char *name,
                                           const char *definition);

/* The definition as JSON: a new reference the caller decrefs (NULL when d
 * is NULL or on allocation failure). */
SAGA_API json_t *saga_def_to_json(const saga_def *d);

/* Write it to path as indented JSON, keys in the order they were set.
 * SAGA_EINVAL when d or path is NULL, SAGA_EIO when the file cannot be
 * written; err (may be NULL) says which. */
SAGA_API int saga_def_write_file(const saga_def *d, const char *path, saga_error *err);

#ifdef __cplusplus
}
#endif

#endif
