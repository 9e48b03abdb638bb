/* sagactl_roles.c - `sagactl roles create`: the least-privilege database
 * roles a deployment grants to its login roles (saga_engine for sagad,
 * saga_starter for services that start sagas, saga_operator for repairs,
 * saga_reader for dashboards), their grants, and the row-level security
 * that keeps a starter to its own start requests and sagas. Idempotent:
 * run it again after each `sagactl migrate`. Needs a role that may create
 * roles (CREATEROLE) and owns the schema. */
#include <stdio.h>
#include <string.h>

#include <libpq-fe.h>

#include "sagactl.h"

/* One transaction. Policies name the roles, so they are made here, once
 * the roles exist, not in a migration. The schema's owner bypasses row
 * security (sagad as the owner pays nothing); saga_engine, saga_operator
 * and saga_reader see every row through a policy that is simply true; a
 * starter sees the rows it asked for. */
static const char roles_sql[] =
    "DO $$ DECLARE r text; BEGIN"
    " FOREACH r IN ARRAY ARRAY['saga_engine', 'saga_starter', 'saga_operator',"
    "   'saga_reader'] LOOP"
    "   IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN"
    "     EXECUTE format('CREATE ROLE %I NOLOGIN', r);"
    "     RAISE NOTICE 'created role %', r;"
    "   END IF;"
    " END LOOP; END $$;"
    "GRANT USAGE ON SCHEMA saga TO saga_engine, saga_starter, saga_operator, saga_reader;"
    /* sagad: rows of every table, no DDL (migrations are the owner's). */
    "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA saga TO saga_engine;"
    "GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA saga TO saga_engine;"
    /* Operators: sagactl's repairs go through sagad's writer (sagas, steps,
     * history, outbox), deploy writes definitions, purge deletes, limits
     * and dead letters are updated; no DDL either. */
    "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA saga TO saga_operator;"
    "GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA saga TO saga_operator;"
    "GRANT SELECT ON ALL TABLES IN SCHEMA saga TO saga_reader;"
    /* Starters: ask for sagas, follow their own; the input limit and the
     * schema version are read on the way. */
    "REVOKE ALL ON ALL TABLES IN SCHEMA saga FROM saga_starter;"
    "GRANT SELECT, INSERT ON saga.start_request TO saga_starter;"
    /* ... cancel what it scheduled, and signal its sagas' wait steps. */
    "GRANT UPDATE (processed_at, cancelled_at, cancelled_by, error) ON saga.start_request"
    "  TO saga_starter;"
    /* Who sent it (sent_by, its default) and what became of it are not
     * the starter's to write. */
    "REVOKE INSERT ON saga.saga_signal FROM saga_starter;"
    "GRANT SELECT ON saga.saga_signal TO saga_starter;"
    "GRANT INSERT (saga_id, name, signal_id, payload, failed, reason)"
    "  ON saga.saga_signal TO saga_starter;"
    "GRANT SELECT ON saga.saga, saga.saga_step, saga.saga_event, saga.saga_element,"
    "  saga.saga_child, saga.limits, saga.schema_migrations TO saga_starter;"
    /* Tables a later migration adds get the same grants (objects this
     * role creates: run `roles create` as the role that migrates). */
    "ALTER DEFAULT PRIVILEGES IN SCHEMA saga GRANT SELECT, INSERT, UPDATE, DELETE ON"
    "  TABLES TO saga_engine, saga_operator;"
    "ALTER DEFAULT PRIVILEGES IN SCHEMA saga GRANT USAGE, SELECT, UPDATE ON SEQUENCES"
    "  TO saga_engine, saga_operator;"
    "ALTER DEFAULT PRIVILEGES IN SCHEMA saga GRANT SELECT ON TABLES TO saga_reader;"
    /* Row-level security: a starter's own requests and sagas only. */
    "ALTER TABLE saga.start_request ENABLE ROW LEVEL SECURITY;"
    "ALTER TABLE saga.saga ENABLE ROW LEVEL SECURITY;"
    "ALTER TABLE saga.saga_step ENABLE ROW LEVEL SECURITY;"
    "ALTER TABLE saga.saga_event ENABLE ROW LEVEL SECURITY;"
    "ALTER TABLE saga.saga_signal ENABLE ROW LEVEL SECURITY;"
    "ALTER TABLE saga.saga_element ENABLE ROW LEVEL SECURITY;"
    "ALTER TABLE saga.saga_child ENABLE ROW LEVEL SECURITY;"
    "DROP POLICY IF EXISTS every_row ON saga.start_request;"
    "DROP POLICY IF EXISTS every_row ON saga.saga;"
    "DROP POLICY IF EXISTS every_row ON saga.saga_step;"
    "DROP POLICY IF EXISTS every_row ON saga.saga_event;"
    "DROP POLICY IF EXISTS every_row ON saga.saga_signal;"
    "DROP POLICY IF EXISTS own_rows ON saga.saga_signal;"
    "DROP POLICY IF EXISTS every_row ON saga.saga_element;"
    "DROP POLICY IF EXISTS own_rows ON saga.saga_element;"
    "DROP POLICY IF EXISTS every_row ON saga.saga_child;"
    "DROP POLICY IF EXISTS own_rows ON saga.saga_child;"
    "DROP POLICY IF EXISTS own_rows ON saga.start_request;"
    "DROP POLICY IF EXISTS own_rows ON saga.saga;"
    "DROP POLICY IF EXISTS own_rows ON saga.saga_step;"
    "DROP POLICY IF EXISTS own_rows ON saga.saga_event;"
    "CREATE POLICY every_row ON saga.start_request TO saga_engine, saga_operator,"
    "  saga_reader USING (true) WITH CHECK (true);"
    "CREATE POLICY every_row ON saga.saga TO saga_engine, saga_operator, saga_reader"
    "  USING (true) WITH CHECK (true);"
    "CREATE POLICY every_row ON saga.saga_step TO saga_engine, saga_operator,"
    "  saga_reader USING (true) WITH CHECK (true);"
    "CREATE POLICY every_row ON saga.saga_event TO saga_engine, saga_operator,"
    "  saga_reader USING (true) WITH CHECK (true);"
    "CREATE POLICY every_row ON saga.saga_signal TO saga_engine, saga_operator,"
    "  saga_reader USING (true) WITH CHECK (true);"
    "CREATE POLICY every_row ON saga.saga_element TO saga_engine, saga_operator,"
    "  saga_reader USING (true) WITH CHECK (true);"
    "CREATE POLICY every_row ON saga.saga_child TO saga_engine, saga_operator,"
    "  saga_reader USING (true) WITH CHECK (true);"
    /* A fan-out's elements and a saga's children: the starter's sagas'. */
    "CREATE POLICY own_rows ON saga.saga_element FOR SELECT TO saga_starter"
    "  USING (EXISTS (SELECT 1 FROM saga.saga s WHERE s.id = saga_id"
    "  AND s.started_by = current_user));"
    "CREATE POLICY own_rows ON saga.saga_child FOR SELECT TO saga_starter"
    "  USING (EXISTS (SELECT 1 FROM saga.saga s WHERE s.id = parent_id"
    "  AND s.started_by = current_user));"
    "CREATE POLICY own_rows ON saga.saga_signal TO saga_starter"
    "  USING (EXISTS (SELECT 1 FROM saga.saga s WHERE s.id = saga_id"
    "  AND s.started_by = current_user)) WITH CHECK (EXISTS (SELECT 1 FROM saga.saga s"
    "  WHERE s.id = saga_id AND s.started_by = current_user));"
    /* requested_by defaults to current_user; the check makes it the only
     * value a starter may write, so nobody asks in another's name. */
    "CREATE POLICY own_rows ON saga.start_request TO saga_starter"
    "  USING (requested_by = current_user) WITH CHECK (requested_by = current_user);"
    "CREATE POLICY own_rows ON saga.saga FOR SELECT TO saga_starter"
    "  USING (started_by = current_user);"
    "CREATE POLICY own_rows ON saga.saga_step FOR SELECT TO saga_starter"
    "  USING (EXISTS (SELECT 1 FROM saga.saga s WHERE s.id = saga_id"
    "  AND s.started_by = current_user));"
    "CREATE POLICY own_rows ON saga.saga_event FOR SELECT TO saga_starter"
    "  USING (EXISTS (SELECT 1 FROM saga.saga s WHERE s.id = saga_id"
    "  AND s.started_by = current_user));";

/* What was done ("created role ..."); not the "policy ... does not exist,
 * skipping" of each DROP POLICY IF EXISTS on a first run. */
static void print_notice(void *arg, const char *message)
{
    (void)arg;
    if (strstr(message, "does not exist, skipping") != NULL)
        return;
    printf("%s", strncmp(message, "NOTICE:  ", 9) == 0 ? message + 9 : message);
}

int cmd_roles(int argc, char **argv)
{
    static const struct option opts[] = {{"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    PGconn *db;
    PGresult *r;
    int rc = EXIT_OK;

    for (int c; (c = sagactl_getopt("roles", argc, argv, opts)) != -1;) {
        printf("usage: sagactl roles create\n"
               "Creates (if missing) the NOLOGIN roles saga_engine (sagad: reads and\n"
               "writes rows, no DDL), saga_starter (inserts start requests, reads its\n"
               "own sagas only: row-level security on who asked), saga_operator\n"
               "(repairs, deploys, purges) and saga_reader (reads everything), grants\n"
               "them their rights in schema saga, and turns row-level security on.\n"
               "Idempotent; run it again after `sagactl migrate`, as the role that\n"
               "migrates (it needs CREATEROLE). Then grant them to login roles:\n"
               "  GRANT saga_starter TO orders_app;\n"
               "See docs/OPERATIONS.md, \"Database roles\".\n");
        return EXIT_OK;
    }
    if (optind >= argc || strcmp(argv[optind], "create") != 0)
        die_usage("roles: expected `roles create`%s%s%s", optind < argc ? " (not \"" : "",
                  optind < argc ? argv[optind] : "", optind < argc ? "\")" : "");
    if (optind + 1 < argc)
        die_usage("roles create: unexpected argument \"%s\"", argv[optind + 1]);
    db = connect_db(1);
    PQsetNoticeProcessor(db, print_notice, NULL);
    r = PQexec(db, "BEGIN");
    PQclear(r);
    r = PQexec(db, roles_sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        fprintf(stderr, "sagactl roles create: %s", PQerrorMessage(db));
        PQclear(r);
        r = PQexec(db, "ROLLBACK");
        rc = EXIT_DB;
    } else {
        PQclear(r);
        r = PQexec(db, "COMMIT");
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            fprintf(stderr, "sagactl roles create: %s", PQerrorMessage(db));
            rc = EXIT_DB;
        } else {
            printf(
                "roles saga_engine, saga_starter, saga_operator, saga_reader: granted; "
                "row-level security on\n");
        }
    }
    PQclear(r);
    PQfinish(db);
    return rc;
}
