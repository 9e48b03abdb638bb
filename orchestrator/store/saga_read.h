/* saga_read.h - reading sagas as JSON for the HTTP API (and anything else
 * that shows them): one saga with its steps, a start request not (yet) a
 * saga, and a page of a search with keyset pagination. The JSON is built
 * by PostgreSQL. Each call is one statement on db; thread safety: one
 * connection per thread. */
#ifndef SAGA_READ_H
#define SAGA_READ_H

#include <jansson.h>
#include <libpq-fe.h>

#include "saga/error.h"

/* The part of a saga's JSON (alias s, saga.saga) that sagactl show and the
 * API share: its parent, and its steps with their elements and children
 * (keys parent and steps, the rest of a json_build_object). */
#define SAGA_READ_SAGA_LINKS_AND_STEPS                                                   \
    " 'parent', CASE WHEN s.parent_id IS NULL THEN NULL ELSE json_build_object('id',"    \
    "  s.parent_id, 'step', s.parent_step) END,"                                         \
    " 'steps', (SELECT coalesce(json_agg(json_build_object("                             \
    "   'index', st.idx, 'name', st.name, 'status', st.status, 'attempts', st.attempts," \
    "   'started_at', saga.iso(st.started_at), 'finished_at', saga.iso(st.finished_at)," \
    "   'output', st.output, 'error', st.error,"                                         \
    "   'elements', (SELECT json_object_agg(x.status, x.n) FROM (SELECT e.status,"       \
    "    count(*) AS n FROM saga.saga_element e WHERE e.saga_id = st.saga_id"            \
    "    AND e.step = st.idx GROUP BY e.status) x),"                                     \
    "   'child', (SELECT json_build_object('id', c.child_id, 'definition', "             \
    "c.definition,"                                                                      \
    "    'status', coalesce(cs.status, c.ended_status, 'pending')) FROM "                \
    "saga.saga_child c"                                                                  \
    "    LEFT JOIN saga.saga cs ON cs.id = c.child_id WHERE c.parent_id = st.saga_id"    \
    "    AND c.parent_step = st.idx)) ORDER BY st.idx), '[]')"                           \
    "  FROM saga.saga_step st WHERE st.saga_id = s.id))"

/* The saga id (a UUID) as a JSON object into *json (new, the caller frees
 * it): id, name, version, status, step, input, idempotency_key,
 * business_key, created_at, updated_at, deadline_at, trace_id, traceparent and steps
 * (index, name, status, attempts, started_at, finished_at, output,
 * error); when there is no saga but a start request with that id, the
 * request (status pending or rejected, with error). SAGA_ENOTFOUND when
 * neither exists (*json NULL), SAGA_EDB when the database fails. owner
 * (NULL: anyone's) limits it to the sagas and requests of that caller
 * (started_by, requested_by): another's is SAGA_ENOTFOUND. */
int saga_read_saga(PGconn *db, const char *id, const char *owner, char **json,
                   saga_error *err);

/* The saga's timeline as a JSON array into *events (new reference),
 * oldest first: seq, at, kind, step, step_name, phase, attempt, detail,
 * actor, since_previous_ms, and the saga's trace_id and, for an event of
 * a step attempt, the span_id its command carried; an empty array for a
 * start request that is not a saga yet. SAGA_ENOTFOUND when there is
 * neither (or it is not owner's, owner not NULL), SAGA_EDB when the
 * database fails. */
int saga_read_history(PGconn *db, const char *id, const char *owner, json_t **events,
                      saga_error *err);

/* Every definition: name, latest version, number of versions, when the
 * latest was deployed, sagas still active, as a JSON array (*json new).
 * SAGA_EDB when the database fails. */
int saga_read_definitions(PGconn *db, char **json, saga_error *err);

/* Definition name at version (0: the latest) as {"name", "version",
 * "digest", "deployed_at", "versions": [1, 2, ...], "definition": {...}}.
 * SAGA_ENOTFOUND when there is no such name or version. */
int saga_read_definition(PGconn *db, const char *name, int version, char **json,
                         saga_error *err);

/* A search. NULL or "" fields are not filtered on. */
typedef struct saga_read_filter {
    const char *status;       /* running, compensating, completed, ... */
    const char *definition;   /* the definition's name */
    const char *business_key; /* exactly this business key */
    const char *since;        /* created at or after (ISO 8601 timestamp) */
    const char *older_than;   /* created before (ISO 8601 timestamp) */
    const char *cursor;       /* the last page's next_cursor */
    const char *owner;        /* only the sagas this caller started (started_by) */
    int limit;                /* 1..1000 */
} saga_read_filter;

/* One page, newest first, as {"sagas": [...], "next_cursor": "..."|null}
 * into *json (new). A cursor is opaque to callers (the created time and
 * id of the last saga of a page); one that is not of that form is
 * SAGA_EINVAL with err naming it. SAGA_EDB when the database fails. */
int saga_read_search(PGconn *db, const saga_read_filter *f, char **json, saga_error *err);

#endif
