/* Schema migrations: migrations/NNNN_name.sql, applied in order, each once,
 * each in its own transaction, with a recorded SHA-256 checksum. */
#ifndef SAGA_MIGRATE_H
#define SAGA_MIGRATE_H

#include <libpq-fe.h>

#include "saga/error.h"

/* Called once per file applied (or found already applied). */
typedef void (*saga_migrate_progress_fn)(const char *file, int applied, void *arg);

/* Apply the pending migrations in dir. Refuses (SAGA_ESTATE, nothing
 * applied) when an applied file's checksum changed, an applied file is
 * missing, or a pending file is older than the newest applied one. A file
 * whose SQL fails is rolled back and the run stops there (SAGA_ESTATE; the
 * files before it stay applied). SAGA_EDB: the database could not be used.
 * *applied counts the files applied now. */
int saga_migrate(PGconn *db, const char *dir, int *applied, saga_migrate_progress_fn fn,
                 void *arg, saga_error *err);

/* The highest applied version, 0 if none (SAGA_OK), or an error if the
 * migrations table cannot be read. */
int saga_migrate_current(PGconn *db, int *version, saga_error *err);

/* The schema version this build of sagad needs. */
#define SAGA_SCHEMA_VERSION 24

#endif
