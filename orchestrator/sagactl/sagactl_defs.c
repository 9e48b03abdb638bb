/* sagactl defs deploy / list / show: saga definitions stored in PostgreSQL.
 * The same content (normalised JSON) is the same version; changed content
 * becomes the next version. Running sagas keep the version they started
 * with; new sagas take the latest. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "saga/saga.h"
#include "saga_definition.h"
#include "saga_pgerr.h"
#include "saga_store.h"
#include "sagactl.h"

static int deploy(int argc, char **argv)
{
    saga_definition **defs = calloc((size_t)argc + 1, sizeof *defs);
    saga_defs *cache;
    saga_error err = {0};
    int nfiles = 0, bad = 0, rc = SAGA_OK;
    int64_t max_bytes;
    PGconn *db;

    if (argc == 0)
        die_usage("defs deploy: no %s given", "FILE");
    /* The database's limit, so that what validates here is what its
     * trigger accepts (validate, without a database, takes the default). */
    db = connect_db(1);
    max_bytes = limit_bytes(db, "max_definition_bytes");
    for (int k = 0; k < argc; k++) {
        saga_def_problems probs = {.max_bytes = max_bytes};
        /* Validate everything first: deploy all or nothing. */
        if (saga_definition_load_file(argv[k], &defs[nfiles], &probs) != SAGA_OK) {
            bad++;
            print_problems(argv[k], &probs);
        } else {
            nfiles++;
        }
    }
    if (bad > 0) {
        fprintf(stderr, "sagactl defs deploy: %d invalid file(s); nothing deployed\n",
                bad);
        for (int i = 0; i < nfiles; i++)
            saga_definition_free(defs[i]);
        free(defs);
        PQfinish(db);
        return EXIT_REFUSED;
    }
    saga_pgerr_clear();
    cache = saga_defs_new();
    /* Child steps: against these files and what is stored. */
    for (int i = 0; i < nfiles && rc == SAGA_OK; i++) {
        saga_def_problems probs = {0};
        int crc = saga_store_check_children(db, cache, defs, nfiles, i, &probs, &err);
        if (crc == SAGA_EDEF) {
            print_problems(argv[i], &probs);
            bad++;
        } else if (crc != SAGA_OK) {
            rc = crc;
        }
    }
    if (bad > 0 && rc == SAGA_OK) {
        fprintf(stderr, "sagactl defs deploy: %d invalid file(s); nothing deployed\n",
                bad);
        for (int i = 0; i < nfiles; i++)
            saga_definition_free(defs[i]);
        free(defs);
        saga_defs_free(cache);
        PQfinish(db);
        return EXIT_REFUSED;
    }
    if (rc == SAGA_OK)
        rc = saga_store_exec(db, "BEGIN", &err);
    for (int i = 0; i < nfiles && rc == SAGA_OK; i++) {
        char name[128];
        int created = 0;
        snprintf(name, sizeof name, "%s", defs[i]->name);
        rc = saga_store_register_definition(db, cache, defs[i], &created, &err);
        defs[i] = NULL; /* the cache owns it now, also on failure */
        if (rc == SAGA_OK) {
            /* The version of this content (the cache's newest entry). */
            int version = saga_defs_last_version(cache);
            if (want_json)
                printf("{\"name\": \"%s\", \"version\": %d, \"created\": %s}\n", name,
                       version, created ? "true" : "false");
            else
                printf("%s: version %d (%s)\n", name, version,
                       created ? "new" : "unchanged");
        }
    }
    if (rc == SAGA_OK)
        rc = saga_store_exec(db, "COMMIT", &err);
    else
        saga_store_exec(db, "ROLLBACK", NULL);
    for (int i = 0; i < nfiles; i++)
        saga_definition_free(defs[i]);
    free(defs);
    saga_defs_free(cache);
    PQfinish(db);
    if (rc != SAGA_OK) {
        fprintf(stderr, "sagactl defs deploy: %s; nothing deployed\n", err.message);
        /* 54000: the limit's trigger (lowered since it was read above). */
        return strcmp(saga_pgerr_sqlstate(), "54000") == 0 ? EXIT_REFUSED : EXIT_DB;
    }
    return EXIT_OK;
}

static const char list_sql[] =
    "SELECT coalesce(json_agg(x ORDER BY x.name), '[]') FROM ("
    " SELECT d.name, max(d.version) AS latest, count(*) AS versions,"
    "  saga.iso(max(d.created_at)) AS deployed_at,"
    "  (SELECT count(*) FROM saga.saga s WHERE s.name = d.name"
    "   AND s.status IN ('running', 'compensating')) AS active_sagas"
    " FROM saga.saga_definition d GROUP BY d.name) x";

static int list(void)
{
    PGconn *db = connect_db(1);
    json_t *rows = query_json(db, list_sql, 0, NULL), *row;
    size_t i;
    PQfinish(db);
    if (want_json) {
        print_json(rows);
    } else {
        printf("%-24s  %7s  %8s  %6s  %s\n", "NAME", "LATEST", "VERSIONS", "ACTIVE",
               "DEPLOYED");
        json_array_foreach(rows, i, row)
        {
            printf("%-24s  %7lld  %8lld  %6lld  %s\n", str(row, "name"),
                   (long long)json_integer_value(json_object_get(row, "latest")),
                   (long long)json_integer_value(json_object_get(row, "versions")),
                   (long long)json_integer_value(json_object_get(row, "active_sagas")),
                   str(row, "deployed_at"));
        }
    }
    json_decref(rows);
    return EXIT_OK;
}

static int show(int argc, char **argv)
{
    const char *name = NULL;
    char version[32] = "0";
    const char *p[2];
    json_t *def;
    PGconn *db;

    static const struct option opts[] = {{"version", required_argument, NULL, 'v'},
                                         {"json", no_argument, NULL, 'j'},
                                         {NULL, 0, NULL, 0}};
    for (int c; (c = sagactl_getopt("defs show", argc, argv, opts)) != -1;) {
        if (c == 'v') {
            /* Checked here: "2x" would otherwise reach SQL as '2x'::int. */
            long v = parse_number("defs show", "--version", optarg, 1, 2147483647L);
            snprintf(version, sizeof version, "%ld", v);
        } else {
            want_json = 1;
        }
    }
    name = sagactl_operand("defs show", argc, argv);
    if (name == NULL)
        die_usage("defs show: missing the definition %s", "NAME");
    p[0] = name;
    p[1] = version;
    db = connect_db(1);
    def = query_json(
        db,
        "SELECT json_build_object('name', name, 'version', version, 'digest',"
        " digest, 'deployed_at', saga.iso(created_at), 'body', body)"
        " FROM saga.saga_definition WHERE name = $1"
        " AND ($2::int = 0 OR version = $2::int) ORDER BY version DESC LIMIT 1",
        2, p);
    PQfinish(db);
    if (def == NULL) {
        fprintf(stderr, "sagactl defs show: no definition %s%s%s\n", name,
                strcmp(version, "0") ? " version " : "",
                strcmp(version, "0") ? version : "");
        return EXIT_REFUSED;
    }
    if (want_json) {
        print_json(def);
    } else {
        printf("# %s version %lld, deployed %s, digest %.16s...\n", str(def, "name"),
               (long long)json_integer_value(json_object_get(def, "version")),
               str(def, "deployed_at"), str(def, "digest"));
        print_json(json_object_get(def, "body"));
    }
    json_decref(def);
    return EXIT_OK;
}

int cmd_defs(int argc, char **argv)
{
    const char *sub = argc > 1 ? argv[1] : NULL;
    if (sub == NULL || strcmp(sub, "--help") == 0) {
        printf(
            "usage: sagactl defs deploy FILE...      store definitions (all or "
            "nothing);\n"
            "                                          changed content = next version\n"
            "       sagactl defs list [--json]        definitions, latest versions\n"
            "       sagactl defs show NAME [--version N] [--json]\n");
        return sub == NULL ? EXIT_USAGE : EXIT_OK;
    }
    /* The subcommand parses from argv[1] on, as a command does. */
    optind = 0;
    if (strcmp(sub, "deploy") == 0 || strcmp(sub, "list") == 0) {
        static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
                                             {NULL, 0, NULL, 0}};
        const char *what = sub[0] == 'd' ? "defs deploy" : "defs list";
        while (sagactl_getopt(what, argc - 1, argv + 1, opts) != -1)
            want_json = 1;
        if (sub[0] == 'd')
            return deploy(argc - 1 - optind, argv + 1 + optind);
        if (optind < argc - 1)
            die_usage("defs list: unexpected argument \"%s\"", argv[1 + optind]);
        return list();
    }
    if (strcmp(sub, "show") == 0)
        return show(argc - 1, argv + 1);
    die_usage("defs: unknown subcommand \"%s\" (deploy, list, show)", sub);
    return EXIT_USAGE;
}
