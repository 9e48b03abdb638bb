/* saga_store_defs.c - saga definitions in the store: registered by content
 * digest (the same content keeps its version), read by name and version,
 * and cached. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "saga_pg.h"
#include "saga_store.h"
#include "saga_shared.h"

/* ---- definitions ---- */

struct saga_defs {
    int n, cap;
    saga_definition **items;
    int last_version;
};

int saga_defs_last_version(const saga_defs *d)
{
    return d != NULL ? d->last_version : 0;
}

saga_defs *saga_defs_new(void)
{
    return calloc(1, sizeof(saga_defs));
}

void saga_defs_free(saga_defs *d)
{
    if (d == NULL)
        return;
    for (int i = 0; i < d->n; i++)
        saga_definition_free(d->items[i]);
    free(d->items);
    free(d);
}

static const saga_definition *defs_find(const saga_defs *d, const char *name, int version)
{
    for (int i = 0; i < d->n; i++)
        if (d->items[i]->version == version && strcmp(d->items[i]->name, name) == 0)
            return d->items[i];
    return NULL;
}

/* Take def into the cache; if that version is cached already, free def. */
static int defs_put(saga_defs *d, saga_definition *def, const saga_definition **out)
{
    const saga_definition *have = defs_find(d, def->name, def->version);
    if (have != NULL) {
        saga_definition_free(def);
        *out = have;
        return SAGA_OK;
    }
    if (saga__grow(&d->items, &d->cap, d->n + 1, sizeof *d->items, 8) != SAGA_OK) {
        saga_definition_free(def);
        return SAGA_ENOMEM;
    }
    d->items[d->n++] = def;
    *out = def;
    return SAGA_OK;
}

int saga_store_register_definition(PGconn *db, saga_defs *defs, saga_definition *def,
                                   int *created, saga_error *err)
{
    char *body = json_dumps(def->body, JSON_COMPACT | JSON_SORT_KEYS);
    const char *p[2] = {def->name, body};
    const saga_definition *kept;
    PGresult *r;

    *created = 0;
    if (body == NULL) {
        saga_definition_free(def);
        return saga__error_set(err, SAGA_ENOMEM, "out of memory");
    }
    /* jsonb normalises key order and spacing, so the digest is of content.
     * The advisory lock makes concurrent deploys of one name take turns. */
    r = saga__pg_query(
        db,
        "WITH lock AS (SELECT pg_advisory_xact_lock(hashtext('saga_definition:' || $1))),"
        " d AS (SELECT encode(sha256(convert_to(($2::jsonb)::text, 'UTF8')), 'hex') AS "
        "digest"
        "       FROM lock),"
        " old AS (SELECT version FROM saga.saga_definition, d"
        "         WHERE name = $1 AND saga_definition.digest = d.digest),"
        " ins AS (INSERT INTO saga.saga_definition (name, version, body, digest)"
        "         SELECT $1, coalesce((SELECT max(version) FROM saga.saga_definition"
        "                               WHERE name = $1), 0) + 1, $2::jsonb, d.digest"
        "         FROM d WHERE NOT EXISTS (SELECT 1 FROM old) RETURNING version)"
        " SELECT version, true FROM ins UNION ALL SELECT version, false FROM old",
        2, p, PGRES_TUPLES_OK, "storing the definition", err);
    free(body);
    if (r == NULL) {
        saga_definition_free(def);
        return SAGA_EDB;
    }
    if (PQntuples(r) != 1) {
        PQclear(r);
        saga_definition_free(def);
        return saga__error_set(err, SAGA_EDB,
                               "storing the definition: no version returned");
    }
    def->version = atoi(PQgetvalue(r, 0, 0));
    defs->last_version = def->version;
    *created = PQgetvalue(r, 0, 1)[0] == 't';
    PQclear(r);
    return defs_put(defs, def, &kept);
}

int saga_store_get_definition(PGconn *db, saga_defs *defs, const char *name, int version,
                              const saga_definition **out, saga_error *err)
{
    char vbuf[16];
    const char *p[2] = {name, vbuf};
    saga_def_problems probs = {0};
    saga_definition *def;
    PGresult *r;
    int rc;

    if (version > 0 && (*out = defs_find(defs, name, version)) != NULL)
        return SAGA_OK;
    snprintf(vbuf, sizeof vbuf, "%d", version);
    r = saga__pg_query(
        db,
        "SELECT version, body::text FROM saga.saga_definition WHERE name = $1"
        " AND ($2::int = 0 OR version = $2::int) ORDER BY version DESC LIMIT 1",
        2, p, PGRES_TUPLES_OK, "loading a definition", err);
    if (r == NULL)
        return SAGA_EDB;
    if (PQntuples(r) == 0) {
        PQclear(r);
        if (version > 0)
            return saga__error_set(err, SAGA_ENOTFOUND, "no definition %s version %d",
                                   name, version);
        return saga__error_set(err, SAGA_ENOTFOUND,
                               "no definition named \"%s\" (deploy it, or "
                               "start sagad with it in its folder)",
                               name);
    }
    version = atoi(PQgetvalue(r, 0, 0));
    if ((*out = defs_find(defs, name, version)) != NULL) {
        PQclear(r);
        return SAGA_OK;
    }
    /* It was valid when deployed; a later release's stricter rules must not
     * strand the sagas that run on it. */
    probs.stored = 1;
    {
        /* As PostgreSQL prints it: numbers too long for jansson read as reals. */
        json_error_t jerr;
        json_t *body =
            saga__json_from_pg(PQgetvalue(r, 0, 1), JSON_REJECT_DUPLICATES, &jerr);
        if (body != NULL) {
            rc = saga_definition_from_json(body, &def, &probs);
            json_decref(body);
        } else {
            rc = saga_definition_parse(PQgetvalue(r, 0, 1), strlen(PQgetvalue(r, 0, 1)),
                                       &def, &probs);
        }
    }
    PQclear(r);
    if (rc == SAGA_ENOMEM) /* passing, not the definition's fault */
        return saga__error_set(err, SAGA_ENOMEM, "out of memory");
    if (rc != SAGA_OK)
        return saga__error_set(err, SAGA_EDEF,
                               "stored definition %s version %d is invalid: %s: %s", name,
                               version, probs.items[0].where, probs.items[0].message);
    def->version = version;
    if (defs_put(defs, def, out) != SAGA_OK)
        return saga__error_set(err, SAGA_ENOMEM, "out of memory");
    return SAGA_OK;
}

/* A lookup among the definitions deployed together, then the stored ones. */
typedef struct child_lookup {
    PGconn *db;
    saga_defs *cache;
    saga_definition *const *defs;
    int n;
    int failed; /* the database could not be read */
    saga_error *err;
} child_lookup;

static const saga_definition *lookup_child(const char *name, void *arg)
{
    child_lookup *l = arg;
    const saga_definition *found = NULL;
    saga_error err = {0};
    for (int i = 0; i < l->n; i++)
        if (l->defs[i] != NULL && strcmp(l->defs[i]->name, name) == 0)
            return l->defs[i];
    if (saga_store_get_definition(l->db, l->cache, name, 0, &found, &err) == SAGA_OK)
        return found;
    if (err.code != SAGA_ENOTFOUND && !l->failed) {
        l->failed = 1;
        *l->err = err;
    }
    return NULL;
}

int saga_store_check_children(PGconn *db, saga_defs *cache, saga_definition *const *defs,
                              int n, int which, saga_def_problems *problems,
                              saga_error *err)
{
    child_lookup l = {db, cache, defs, n, 0, err};
    int rc = saga_definition_check_children(defs[which], lookup_child, &l, problems);
    return l.failed ? SAGA_EDB : rc;
}
