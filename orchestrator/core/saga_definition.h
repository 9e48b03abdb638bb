/* Saga definitions: the JSON format of docs/DEFINITIONS.md, parsed and
 * validated completely (every problem reported, each with where it is). */
#ifndef SAGA_DEFINITION_H
#define SAGA_DEFINITION_H

#include <stdint.h>

#include <jansson.h>

#include "saga/error.h"

typedef struct saga_retry_policy {
    int max_attempts;       /* >= 1; 0 means "until it succeeds" (pivot and after) */
    int64_t backoff_ms;     /* delay before the 2nd attempt */
    int64_t max_backoff_ms; /* cap */
    double multiplier;      /* >= 1 */
    double jitter;          /* 0..1: the delay varies by up to this fraction */
} saga_retry_policy;

typedef struct saga_step_def {
    char *name;
    char *service;
    char *action;
    char *compensation; /* NULL: nothing to undo */
    json_t *input;      /* template (see saga_template.h), owned */
    int64_t timeout_ms; /* per attempt */
    saga_retry_policy retry;
    saga_retry_policy compensation_retry;
    int pivot;        /* this step is the saga's point of no return */
    int forward_only; /* pivot or after a pivot: retried until success */
    char *group;      /* parallel group name, NULL if none */
    int stage_first;  /* the steps that run together with this one: */
    int stage_last;   /* [stage_first, stage_last] (itself when not in a group) */
    int irreversible; /* no "compensation" key: an effect it may have had cannot be
                         undone, so an unknown outcome is retried, never given up */
    /* "when": run only when this is true when the step's turn comes (else
     * it is not run, and there is nothing to compensate); NULL: always. */
    struct saga_condition *when;
    /* A wait step ("wait"): it sends nothing and waits for the signal of
     * this name (NULL: a step a service runs), at most wait_timeout_ms (0:
     * as long as it takes); at the timeout its output is wait_default, or,
     * without one, the step fails. */
    char *wait_signal;
    int64_t wait_timeout_ms;
    json_t *wait_default;
    /* "for_each": a fan-out step, run once per element of the list that
     * this reference (the text inside "${...}") names when its turn comes,
     * at most concurrency elements at a time; a list longer than
     * max_elements fails the step. NULL: the step runs once. */
    char *for_each;
    int concurrency;
    int max_elements;
    /* "child": a child step, which starts the latest version of this
     * definition with its input as a saga of its own and ends with it
     * (docs/DEFINITIONS.md, "Child sagas"); NULL: not one. */
    char *child;
} saga_step_def;

typedef struct saga_definition {
    char *name;
    int version; /* assigned by the store; 0 until then */
    char *description;
    int64_t deadline_ms; /* whole saga; 0 = none */
    int nsteps;
    saga_step_def *steps;
    json_t *body; /* the JSON as given, owned */
} saga_definition;

/* One problem found in a definition. */
typedef struct saga_def_problem {
    char where[256];   /* JSON path (steps[2].retry.max_attempts) or line:column */
    char message[512]; /* what was found and what is expected */
} saga_def_problem;

typedef struct saga_def_problems {
    /* In: set for a definition already stored (deployed under an earlier
     * release's rules): only the rules the engine needs to run it apply,
     * so a stricter validator never strands sagas started on it. */
    int stored;
    /* In: the largest definition accepted, in bytes of its JSON text as
     * PostgreSQL prints the stored jsonb (saga.limits max_definition_bytes);
     * 0 means SAGA_DEFAULT_MAX_DEFINITION_BYTES. Not applied with stored:
     * a limit lowered later must not strand the sagas running on one. */
    int64_t max_bytes;
    int count;
    saga_def_problem items[64]; /* the first 64; count keeps counting */
} saga_def_problems;

/* Parse and validate a definition from JSON text / an object / a file.
 * On success *out is owned by the caller (saga_definition_free). On
 * failure returns SAGA_EDEF and problems lists every problem found,
 * among them a definition over problems->max_bytes and any string (value
 * or key) over SAGA_DEF_MAX_STRING_BYTES. load_file reads no more than
 * 16 times the limit (SAGA_EDEF beyond: a file that large is not a
 * definition with some indentation); SAGA_EIO when it cannot be read.
 * SAGA_ENOMEM. Pure apart from load_file's read; any thread. */
int saga_definition_parse(const char *text, size_t len, saga_definition **out,
                          saga_def_problems *problems);
int saga_definition_from_json(json_t *body, saga_definition **out,
                              saga_def_problems *problems);
int saga_definition_load_file(const char *path, saga_definition **out,
                              saga_def_problems *problems);

void saga_definition_free(saga_definition *def);

/* The definition named name among those the caller knows (the files
 * validated together, or those deployed), or NULL. */
typedef const saga_definition *(*saga_def_lookup_fn)(const char *name, void *arg);

/* The rules of def's child steps that need the other definitions: each
 * child definition exists, none leads back to def (a saga would start
 * itself without end), and a child with a pivot (which cannot be undone
 * once it completed) is started only at or after def's own pivot.
 * Problems are appended to problems (where: steps[i].child); SAGA_EDEF
 * when there are any, else SAGA_OK. Pure; any thread. */
int saga_definition_check_children(const saga_definition *def, saga_def_lookup_fn lookup,
                                   void *arg, saga_def_problems *problems);

/* Index of the step named name, or -1. */
int saga_definition_step_index(const saga_definition *def, const char *name);

/* Default policies used where a definition says nothing. */
#define SAGA_DEFAULT_TIMEOUT_MS        30000
#define SAGA_DEFAULT_MAX_ATTEMPTS      3
#define SAGA_DEFAULT_COMP_MAX_ATTEMPTS 10
#define SAGA_DEFAULT_BACKOFF_MS        200
#define SAGA_DEFAULT_MAX_BACKOFF_MS    30000

/* Fan-out ("for_each") where a step says nothing, and the most it may say. */
#define SAGA_DEFAULT_CONCURRENCY  10
#define SAGA_MAX_CONCURRENCY      1000
#define SAGA_DEFAULT_MAX_ELEMENTS 1000

/* saga.limits max_definition_bytes as migration 0011 sets it: where no
 * database says otherwise (sagactl validate, sagad's folder). */
#define SAGA_DEFAULT_MAX_DEFINITION_BYTES 262144
/* The longest string a definition may hold: names, templates and prose
 * are far shorter; anything longer is data, which belongs in the input. */
#define SAGA_DEF_MAX_STRING_BYTES 65536

#endif
