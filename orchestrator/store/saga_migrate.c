/* The migration runner. A session advisory lock serialises concurrent
 * runners (two sagactl migrate at once, or one during a deploy). */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "saga_migrate.h"
#include "saga_shared.h"

#define LOCK_KEY "7340001"

typedef struct mfile {
    int version;
    char name[256];
    char *sql;
} mfile;

static int exec(PGconn *db, const char *sql, saga_error *err)
{
    PGresult *r = PQexec(db, sql);
    int ok =
        PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok)
        saga__error_set(err, SAGA_EDB, "%s", PQerrorMessage(db));
    PQclear(r);
    return ok ? SAGA_OK : SAGA_EDB;
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;
    if (f == NULL)
        return NULL;
    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return NULL;
    }
    buf = malloc((size_t)n + 1);
    if (buf != NULL && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    if (buf != NULL)
        buf[n] = '\0';
    fclose(f);
    return buf;
}

static int cmp_mfile(const void *a, const void *b)
{
    return ((const mfile *)a)->version - ((const mfile *)b)->version;
}

static void free_files(mfile *f, int n)
{
    for (int i = 0; i < n; i++)
        free(f[i].sql);
    free(f);
}

/* List NNNN_name.sql files sorted by version; duplicates are an error. */
static int list_files(const char *dir, mfile **out, int *n, saga_error *err)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    mfile *files = NULL;
    int cnt = 0;

    if (d == NULL)
        return saga__error_set(err, SAGA_EIO, "cannot open migrations folder %s: %s", dir,
                               strerror(errno));
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        char path[4096];
        int version;
        mfile *nf;
        if (len < 6 || strcmp(e->d_name + len - 4, ".sql") != 0)
            continue;
        if (sscanf(e->d_name, "%4d_", &version) != 1 || version <= 0 ||
            e->d_name[4] != '_') {
            closedir(d);
            free_files(files, cnt);
            return saga__error_set(err, SAGA_EINVAL,
                                   "%s/%s: migration files must be named NNNN_name.sql",
                                   dir, e->d_name);
        }
        nf = realloc(files, sizeof *files * (size_t)(cnt + 1));
        if (nf == NULL) {
            closedir(d);
            free_files(files, cnt);
            return saga__error_set(err, SAGA_ENOMEM, "out of memory");
        }
        files = nf;
        files[cnt].version = version;
        snprintf(files[cnt].name, sizeof files[cnt].name, "%s", e->d_name);
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        files[cnt].sql = read_file(path);
        cnt++;
        if (files[cnt - 1].sql == NULL) {
            closedir(d);
            free_files(files, cnt);
            return saga__error_set(err, SAGA_EIO, "cannot read %s: %s", path,
                                   strerror(errno));
        }
    }
    closedir(d);
    if (files != NULL)
        qsort(files, (size_t)cnt, sizeof *files, cmp_mfile);
    for (int i = 1; i < cnt; i++)
        if (files[i].version == files[i - 1].version) {
            saga__error_set(err, SAGA_EINVAL, "%s/%s and %s have the same version %04d",
                            dir, files[i - 1].name, files[i].name, files[i].version);
            free_files(files, cnt);
            return SAGA_EINVAL;
        }
    *out = files;
    *n = cnt;
    return SAGA_OK;
}

static int ensure_table(PGconn *db, saga_error *err)
{
    return exec(db,
                "SET client_min_messages = warning;"
                "CREATE SCHEMA IF NOT EXISTS saga;"
                "CREATE TABLE IF NOT EXISTS saga.schema_migrations ("
                " version int PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())",
                err);
}

/* The checksum is computed by PostgreSQL so no crypto library is needed. */
static int checksum(PGconn *db, const char *sql, char out[65], saga_error *err)
{
    const char *p[1] = {sql};
    PGresult *r = PQexecParams(db, "SELECT encode(sha256(convert_to($1, 'UTF8')), 'hex')",
                               1, NULL, p, NULL, NULL, 0);
    int rc = SAGA_OK;
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        rc = saga__error_set(err, SAGA_EDB, "checksum: %s", PQerrorMessage(db));
    else
        snprintf(out, 65, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    return rc;
}

int saga_migrate(PGconn *db, const char *dir, int *applied, saga_migrate_progress_fn fn,
                 void *arg, saga_error *err)
{
    mfile *files = NULL;
    int n = 0, rc;
    PGresult *r = NULL;

    *applied = 0;
    if ((rc = list_files(dir, &files, &n, err)) != SAGA_OK)
        return rc;
    if (n == 0) {
        free_files(files, n);
        return saga__error_set(err, SAGA_EINVAL, "no migrations (NNNN_name.sql) in %s",
                               dir);
    }
    if ((rc = exec(db, "SELECT pg_advisory_lock(" LOCK_KEY ")", err)) != SAGA_OK)
        goto out;
    if ((rc = ensure_table(db, err)) != SAGA_OK)
        goto unlock;
    r = PQexec(
        db,
        "SELECT version, name, checksum FROM saga.schema_migrations ORDER BY version");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        rc = saga__error_set(err, SAGA_EDB, "reading schema_migrations: %s",
                             PQerrorMessage(db));
        goto unlock;
    }
    /* Verify everything first: a changed or missing applied file refuses
     * the whole run before anything is applied. */
    for (int i = 0; i < PQntuples(r); i++) {
        int v = atoi(PQgetvalue(r, i, 0)), found = 0;
        for (int j = 0; j < n; j++) {
            char sum[65];
            if (files[j].version != v)
                continue;
            found = 1;
            if ((rc = checksum(db, files[j].sql, sum, err)) != SAGA_OK)
                goto unlock;
            if (strcmp(sum, PQgetvalue(r, i, 2)) != 0) {
                rc = saga__error_set(
                    err, SAGA_ESTATE,
                    "%s/%s was changed after it was applied (checksum %.12s..., "
                    "applied %.12s...); nothing applied. Write a new migration "
                    "instead of editing an applied one.",
                    dir, files[j].name, sum, PQgetvalue(r, i, 2));
                goto unlock;
            }
        }
        if (!found) {
            rc = saga__error_set(
                err, SAGA_ESTATE,
                "migration %04d (%s) is applied but missing from %s; nothing "
                "applied",
                v, PQgetvalue(r, i, 1), dir);
            goto unlock;
        }
    }
    /* A pending file older than the newest applied one was written on a
     * branch that missed the later ones: applied now it would run against
     * a schema it was not written for, so it is refused, not slipped in. */
    if (PQntuples(r) > 0) {
        int newest = atoi(PQgetvalue(r, PQntuples(r) - 1, 0));
        for (int j = 0; j < n; j++) {
            int done = 0;
            for (int i = 0; i < PQntuples(r); i++)
                done |= atoi(PQgetvalue(r, i, 0)) == files[j].version;
            if (!done && files[j].version < newest) {
                rc = saga__error_set(
                    err, SAGA_ESTATE,
                    "%s/%s is not applied but is older than the newest applied "
                    "migration (%04d); nothing applied. Renumber it after %04d.",
                    dir, files[j].name, newest, newest);
                goto unlock;
            }
        }
    }
    for (int j = 0; j < n; j++) {
        int done = 0;
        char sum[65], vbuf[16];
        const char *p[3];
        PGresult *ins;
        for (int i = 0; i < PQntuples(r); i++)
            if (atoi(PQgetvalue(r, i, 0)) == files[j].version)
                done = 1;
        if (done) {
            if (fn)
                fn(files[j].name, 0, arg);
            continue;
        }
        if ((rc = checksum(db, files[j].sql, sum, err)) != SAGA_OK)
            goto unlock;
        if ((rc = exec(db, "BEGIN", err)) != SAGA_OK)
            goto unlock;
        if (exec(db, files[j].sql, err) != SAGA_OK) {
            char msg[sizeof err->message];
            snprintf(msg, sizeof msg, "%s", err ? err->message : "");
            exec(db, "ROLLBACK", NULL);
            /* The file is at fault, unless the connection went: a refusal. */
            rc = saga__error_set(err,
                                 PQstatus(db) == CONNECTION_BAD ? SAGA_EDB : SAGA_ESTATE,
                                 "%s/%s failed, rolled back (this file and the ones "
                                 "after it not applied): %.400s",
                                 dir, files[j].name, msg);
            goto unlock;
        }
        snprintf(vbuf, sizeof vbuf, "%d", files[j].version);
        p[0] = vbuf;
        p[1] = files[j].name;
        p[2] = sum;
        ins = PQexecParams(db,
                           "INSERT INTO saga.schema_migrations (version, name, checksum)"
                           " VALUES ($1, $2, $3)",
                           3, NULL, p, NULL, NULL, 0);
        if (PQresultStatus(ins) != PGRES_COMMAND_OK) {
            rc = saga__error_set(err, SAGA_EDB, "recording %s: %s", files[j].name,
                                 PQerrorMessage(db));
            PQclear(ins);
            exec(db, "ROLLBACK", NULL);
            goto unlock;
        }
        PQclear(ins);
        if ((rc = exec(db, "COMMIT", err)) != SAGA_OK)
            goto unlock;
        (*applied)++;
        if (fn)
            fn(files[j].name, 1, arg);
    }
    rc = SAGA_OK;
unlock:
    PQclear(r);
    exec(db, "SELECT pg_advisory_unlock(" LOCK_KEY ")", NULL);
out:
    free_files(files, n);
    return rc;
}

int saga_migrate_current(PGconn *db, int *version, saga_error *err)
{
    PGresult *r =
        PQexec(db, "SELECT coalesce(max(version), 0) FROM saga.schema_migrations");
    int rc = SAGA_OK;
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        rc =
            saga__error_set(err, SAGA_ESTATE,
                            "the database has no saga schema (run `sagactl migrate`): %s",
                            PQerrorMessage(db));
    else
        *version = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    return rc;
}
