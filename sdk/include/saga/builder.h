/* libsaga: declare a saga definition in C. The builder yields the same JSON
 * as a definition file (docs/DEFINITIONS.md); deploy it with `sagactl defs
 * deploy` or put the file in sagad's folder. Every setter returns SAGA_OK,
 * SAGA_EINVAL (NULL or empty argument) or SAGA_ENOMEM; validation happens
 * where definitions are loaded (sagactl validate, defs deploy, sagad). */
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
 * written (the defaults apply). */
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

/* A new definition named name; NULL on allocation failure or bad name.
 * The caller frees it with saga_def_free(). */
SAGA_API saga_def *saga_def_new(const char *name);
SAGA_API void saga_def_free(saga_def *d);

SAGA_API int saga_def_description(saga_def *d, const char *text);
SAGA_API int saga_def_deadline(saga_def *d, const char *duration);
SAGA_API int saga_def_default_timeout(saga_def *d, const char *duration);
SAGA_API int saga_def_default_retry(saga_def *d, const saga_retry_spec *spec);
SAGA_API int saga_def_default_compensation_retry(saga_def *d,
                                                 const saga_retry_spec *spec);

/* Append a step; the handle stays valid until saga_def_free(). NULL on a
 * bad argument or allocation failure. */
SAGA_API saga_def_step *saga_def_add_step(saga_def *d, const char *name,
                                          const char *service, const char *action);
/* The compensation's name; NULL declares that there is nothing to undo
 * (written as "compensation": null). Without this call the step has no
 * compensation key at all: it is irreversible. */
SAGA_API int saga_def_step_compensation(saga_def_step *s, const char *compensation);
/* The step's input template (a JSON object; stolen, also on failure). */
SAGA_API int saga_def_step_input(saga_def_step *s, json_t *input);
SAGA_API int saga_def_step_timeout(saga_def_step *s, const char *duration);
SAGA_API int saga_def_step_retry(saga_def_step *s, const saga_retry_spec *spec);
SAGA_API int saga_def_step_compensation_retry(saga_def_step *s,
                                              const saga_retry_spec *spec);
SAGA_API int saga_def_step_description(saga_def_step *s, const char *text);
SAGA_API int saga_def_step_pivot(saga_def_step *s, int pivot);
/* Run with the adjacent steps of the same group, in parallel. */
SAGA_API int saga_def_step_group(saga_def_step *s, const char *group);

/* The definition as JSON: a new reference the caller decrefs (NULL on
 * allocation failure). */
SAGA_API json_t *saga_def_to_json(const saga_def *d);

/* Write it to path as indented JSON. */
SAGA_API int saga_def_write_file(const saga_def *d, const char *path, saga_error *err);

#ifdef __cplusplus
}
#endif

#endif
