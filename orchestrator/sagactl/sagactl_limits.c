/* sagactl limits: how large a saga's input, a step's output and a
 * definition may be (saga.limits, migration 0011). Every door reads the
 * table: sagactl start and defs deploy, libsaga's client, the database's
 * triggers, and sagad for outputs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sagactl.h"

static const char *const names[] = {"max_input_bytes", "max_output_bytes",
                                    "max_definition_bytes"};

/* PostgreSQL holds no value larger than 1 GB: no limit above can matter. */
#define MOST_BYTES 1073741824L

/* Kafka's default message.max.bytes (1,048,588): a command holds step
 * inputs built from the input, and outputs of earlier steps. */
#define KAFKA_DEFAULT_MESSAGE 1048588L

int64_t limit_bytes(PGconn *db, const char *name)
{
    const char *p[1] = {name};
    PGresult *r = PQexecParams(db, "SELECT value FROM saga.limits WHERE name = $1", 1,
                               NULL, p, NULL, NULL, 0);
    int64_t v;
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        fprintf(stderr, "sagactl: cannot read the limit %s from saga.limits: %s\n", name,
                PQresultStatus(r) == PGRES_TUPLES_OK
                    ? "no such row (run `sagactl migrate`)"
                    : PQerrorMessage(db));
        PQclear(r);
        PQfinish(db);
        exit(EXIT_DB);
    }
    v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return v;
}

static const char show_sql[] =
    "SELECT coalesce(json_agg(json_build_object('name', name, 'value', value,"
    " 'description', description, 'updated_at', saga.iso(updated_at),"
    " 'updated_by', updated_by, 'reason', reason) ORDER BY name), '[]')"
    " FROM saga.limits";

static int show(void)
{
    PGconn *db = connect_db(1);
    json_t *rows = query_json(db, show_sql, 0, NULL), *row;
    double now = db_now(db);
    int wname = 4, wby = 2, wwhen = 7;
    char when[96], n[32];
    size_t i;

    PQfinish(db);
    if (want_json) {
        print_json(rows);
        json_decref(rows);
        return EXIT_OK;
    }
    json_array_foreach(rows, i, row)
    {
        wname = widen(wname, str(row, "name"));
        wby = widen(wby, str(row, "updated_by"));
        format_when(str(row, "updated_at"), now, 0, when, sizeof when);
        wwhen = widen(wwhen, when);
    }
    printf("%-*s  %13s  %-*s  %-*s  %s\n", wname, "NAME", "BYTES", wwhen, "UPDATED", wby,
           "BY", "REASON");
    json_array_foreach(rows, i, row)
    {
        format_when(str(row, "updated_at"), now, 0, when, sizeof when);
        printf("%-*s  %13s  %-*s  %-*s  %s\n", wname, str(row, "name"),
               saga__bytes_text(json_integer_value(json_object_get(row, "value")), n,
                                sizeof n),
               wwhen, when, wby, str(row, "updated_by"),
               json_is_string(json_object_get(row, "reason")) ? str(row, "reason") : "");
    }
    printf("\n");
    json_array_foreach(rows, i, row)
        printf("%-*s  %s\n", wname, str(row, "name"), str(row, "description"));
    json_decref(rows);
    return EXIT_OK;
}

static int set(int argc, char **argv)
{
    const char *name = NULL, *bytes = NULL, *reason = NULL, *as = NULL;
    char value[32], n1[32], n2[32];
    const char *p[4];
    long v;
    int known = 0;
    PGresult *r;
    PGconn *db;

    static const struct option opts[] = {{"reason", required_argument, NULL, 'r'},
                                         {"as", required_argument, NULL, 'a'},
                                         {"json", no_argument, NULL, 'j'},
                                         {NULL, 0, NULL, 0}};
    for (int c; (c = sagactl_getopt("limits set", argc, argv, opts)) != -1;) {
        if (c == 'r')
            reason = optarg;
        else if (c == 'a')
            as = optarg;
        else
            want_json = 1;
    }
    if (optind + 2 < argc)
        die_usage("limits set: unexpected argument \"%s\"", argv[optind + 2]);
    name = optind < argc ? argv[optind] : NULL;
    bytes = optind + 1 < argc ? argv[optind + 1] : NULL;
    if (name == NULL || bytes == NULL)
        die_usage("limits set: usage: limits set NAME BYTES --reason TEXT [--as TEXT]");
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        known |= strcmp(name, names[i]) == 0;
    if (!known)
        die_usage("limits set: no limit \"%s\" (max_input_bytes, max_output_bytes, "
                  "max_definition_bytes)",
                  name);
    v = parse_number("limits set", "BYTES", bytes, 1, MOST_BYTES);
    if (reason == NULL || *reason == '\0')
        die_usage("limits set: --reason is required: say why, for the next operator");
    snprintf(value, sizeof value, "%ld", v);
    p[0] = name;
    p[1] = value;
    p[2] = as;
    p[3] = reason;
    db = connect_db(1);
    /* The old value from the row locked by this statement, not a read
     * before it that a concurrent set could overtake. */
    r = PQexecParams(db,
                     "UPDATE saga.limits l SET value = $2::bigint, updated_at = now(),"
                     " updated_by = session_user || coalesce(' (on behalf of ' ||"
                     " nullif($3, '') || ')', ''), reason = $4"
                     " FROM (SELECT name, value FROM saga.limits WHERE name = $1"
                     "       FOR UPDATE) o WHERE l.name = o.name RETURNING o.value",
                     4, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        fprintf(stderr, "sagactl limits set: %s",
                PQresultStatus(r) == PGRES_TUPLES_OK ? "no such row\n"
                                                     : PQerrorMessage(db));
        PQclear(r);
        PQfinish(db);
        return EXIT_DB;
    }
    if (want_json)
        printf("{\"name\": \"%s\", \"value\": %ld, \"previous\": %s}\n", name, v,
               PQgetvalue(r, 0, 0));
    else
        printf("%s: %s bytes (was %s)\n", name, saga__bytes_text(v, n1, sizeof n1),
               saga__bytes_text(strtoll(PQgetvalue(r, 0, 0), NULL, 10), n2, sizeof n2));
    if (v > KAFKA_DEFAULT_MESSAGE / 2 && strcmp(name, "max_definition_bytes") != 0)
        fprintf(stderr,
                "sagactl limits set: note: a command carries step inputs built from the "
                "saga's input and earlier outputs; Kafka refuses a message over its "
                "message.max.bytes (%s by default), and such a command fails its step\n",
                saga__bytes_text(KAFKA_DEFAULT_MESSAGE, n1, sizeof n1));
    PQclear(r);
    PQfinish(db);
    return EXIT_OK;
}

int cmd_limits(int argc, char **argv)
{
    const char *sub = argc > 1 ? argv[1] : NULL;
    if (sub != NULL && strcmp(sub, "--help") == 0) {
        printf("usage: sagactl limits [--json]\n"
               "       sagactl limits set NAME BYTES --reason TEXT [--as TEXT]\n"
               "The largest saga input, step output and definition, in bytes of JSON\n"
               "text as PostgreSQL stores it (saga.limits). set changes one for every\n"
               "door at once (sagactl, libsaga's client, the database's triggers,\n"
               "sagad); the operator and reason are kept on the row.\n");
        return EXIT_OK;
    }
    if (sub != NULL && strcmp(sub, "set") == 0) {
        optind = 0; /* set parses from argv[1] on, as a command does */
        return set(argc - 1, argv + 1);
    }
    {
        static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
                                             {NULL, 0, NULL, 0}};
        while (sagactl_getopt("limits", argc, argv, opts) != -1)
            want_json = 1;
        if (optind < argc)
            die_usage("limits: unknown subcommand \"%s\" (set, or --json)", argv[optind]);
    }
    return show();
}
