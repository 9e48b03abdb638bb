/* sagactl_migrate.c - `sagactl migrate`: apply the pending schema
 * migrations, each once, in order, each in its transaction. */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <uuid.h>

#include "saga/saga.h"
#include "saga_definition.h"
#include "saga_duration.h"
#include "saga_machine.h"
#include "saga_migrate.h"
#include "saga_shared.h"
#include "saga_store.h"
#include "saga_tracing.h"
#include "sagactl.h"

/* ---- migrate ---- */

static void on_migration(const char *file, int applied, void *arg)
{
    (void)arg;
    printf("%s %s\n", applied ? "applied " : "up to date", file);
}

int cmd_migrate(int argc, char **argv)
{
    const char *dir =
        getenv("SAGA_MIGRATIONS_DIR") ? getenv("SAGA_MIGRATIONS_DIR") : "migrations";
    saga_error err = {0};
    int applied = 0, rc;
    PGconn *db;

    static const struct option opts[] = {{"dir", required_argument, NULL, 'd'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    for (int c; (c = sagactl_getopt("migrate", argc, argv, opts)) != -1;) {
        if (c == 'd')
            dir = optarg;
        else {
            printf(
                "usage: sagactl migrate [--dir DIR]\nApplies the pending migrations in "
                "DIR "
                "(default ./migrations or $SAGA_MIGRATIONS_DIR), each once, in order,\n"
                "each in a transaction; refuses when an applied file was changed.\n");
            return EXIT_OK;
        }
    }
    if (optind < argc)
        die_usage("migrate: unexpected argument \"%s\"", argv[optind]);
    db = connect_db(0);
    rc = saga_migrate(db, dir, &applied, on_migration, NULL, &err);
    PQfinish(db);
    if (rc != SAGA_OK) {
        fprintf(stderr, "sagactl migrate: %s\n", err.message);
        return rc == SAGA_EDB ? EXIT_DB : EXIT_REFUSED;
    }
    printf("%d migration(s) applied\n", applied);
    return EXIT_OK;
}
