/* sagactl_tokens.c - `sagactl tokens create|list|revoke`: the HTTP API's
 * bearer tokens. A token is 32 random bytes (libcrypto's RAND_bytes) shown
 * once; only its SHA-256 is stored, with its name (the caller the API
 * records) and its role (starter, operator, reader). */
#include <stdio.h>
#include <string.h>

#include <libpq-fe.h>
#include <openssl/rand.h>

#include "sagactl.h"

static int create(const char *name, const char *role)
{
    unsigned char raw[32];
    char token[4 + 2 * sizeof raw + 1], hash[65];
    const char *p[3];
    PGconn *db;
    PGresult *r;
    int rc = EXIT_OK;
    if (RAND_bytes(raw, (int)sizeof raw) != 1) {
        fprintf(stderr, "sagactl tokens create: no randomness from libcrypto\n");
        return EXIT_DB;
    }
    memcpy(token, "sgt_", 4);
    for (size_t i = 0; i < sizeof raw; i++)
        snprintf(token + 4 + 2 * i, 3, "%02x", raw[i]);
    if (saga__sha256_hex(token, strlen(token), hash) != 0) {
        fprintf(stderr, "sagactl tokens create: hashing failed\n");
        return EXIT_DB;
    }
    p[0] = name;
    p[1] = role;
    p[2] = hash;
    db = connect_db(1);
    r = PQexecParams(db,
                     "INSERT INTO saga.api_token (name, role, hash) VALUES ($1, $2, $3)",
                     3, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        if (state != NULL && strcmp(state, "23505") == 0) {
            fprintf(
                stderr,
                "sagactl tokens create: a token named \"%s\" exists (or existed: names "
                "are never reused)\n",
                name);
            rc = EXIT_REFUSED;
        } else {
            fprintf(stderr, "sagactl tokens create: %s", PQerrorMessage(db));
            rc = EXIT_DB;
        }
    } else if (want_json) {
        printf("{\"name\": \"%s\", \"role\": \"%s\", \"token\": \"%s\"}\n", name, role,
               token);
    } else {
        printf("%s\n", token);
        fprintf(
            stderr,
            "token \"%s\" (role %s) created: keep it now, it is not stored and cannot "
            "be shown again (Authorization: Bearer <token>)\n",
            name, role);
    }
    memset(token, 0, sizeof token);
    PQclear(r);
    PQfinish(db);
    return rc;
}

static int list(void)
{
    PGconn *db = connect_db(1);
    json_t *rows = query_json(
        db,
        "SELECT coalesce(json_agg(json_build_object('name', name, 'role', role,"
        " 'created_at', saga.iso(created_at), 'created_by', created_by,"
        " 'revoked_at', saga.iso(revoked_at), 'revoked_by', revoked_by) ORDER BY name),"
        " '[]') FROM saga.api_token",
        0, NULL);
    size_t i;
    json_t *row;
    PQfinish(db);
    if (want_json) {
        print_json(rows);
    } else {
        printf("%-24s %-9s %-26s %s\n", "NAME", "ROLE", "CREATED", "REVOKED");
        json_array_foreach(rows, i, row)
        {
            printf("%-24s %-9s %-26s %s\n", str(row, "name"), str(row, "role"),
                   str(row, "created_at"),
                   json_is_string(json_object_get(row, "revoked_at"))
                       ? str(row, "revoked_at")
                       : "-");
        }
    }
    json_decref(rows);
    return EXIT_OK;
}

static int revoke(const char *name)
{
    const char *p[1] = {name};
    PGconn *db = connect_db(1);
    PGresult *r = PQexecParams(db,
                               "UPDATE saga.api_token SET revoked_at = now(),"
                               " revoked_by = session_user WHERE name = $1 AND"
                               " revoked_at IS NULL",
                               1, NULL, p, NULL, NULL, 0);
    int rc = EXIT_OK;
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        fprintf(stderr, "sagactl tokens revoke: %s", PQerrorMessage(db));
        rc = EXIT_DB;
    } else if (strcmp(PQcmdTuples(r), "1") != 0) {
        fprintf(stderr, "sagactl tokens revoke: no active token \"%s\"\n", name);
        rc = EXIT_REFUSED;
    } else {
        printf("token \"%s\" revoked\n", name);
    }
    PQclear(r);
    PQfinish(db);
    return rc;
}

int cmd_tokens(int argc, char **argv)
{
    static const struct option opts[] = {{"role", required_argument, NULL, 'r'},
                                         {"name", required_argument, NULL, 'n'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *role = NULL, *name = NULL, *verb;
    for (int c; (c = sagactl_getopt("tokens", argc, argv, opts)) != -1;) {
        if (c == 'r')
            role = optarg;
        else if (c == 'n')
            name = optarg;
        else if (c == 'j')
            want_json = 1;
        else {
            printf("usage: sagactl tokens create --role starter|operator|reader --name "
                   "NAME\n"
                   "       sagactl tokens list [--json]\n"
                   "       sagactl tokens revoke NAME\n"
                   "The HTTP API's bearer tokens (docs/API.md). create prints the token\n"
                   "once (only its SHA-256 is stored); NAME is what the API records as\n"
                   "the caller (letters, digits, '.', '_', '-'; never reused). starter:\n"
                   "start sagas and read its own; reader: read everything; operator: "
                   "all.\n");
            return EXIT_OK;
        }
    }
    if (optind >= argc)
        die_usage("tokens: expected create, list or revoke");
    verb = argv[optind];
    if (strcmp(verb, "create") == 0) {
        if (optind + 1 < argc)
            die_usage("tokens create: unexpected argument \"%s\"", argv[optind + 1]);
        if (role == NULL ||
            (strcmp(role, "starter") != 0 && strcmp(role, "operator") != 0 &&
             strcmp(role, "reader") != 0))
            die_usage("tokens create: --role must be starter, operator or reader");
        if (name == NULL || *name == '\0' || strlen(name) > 56 ||
            strspn(name,
                   "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") !=
                strlen(name))
            die_usage(
                "tokens create: --name must be 1 to 56 letters, digits, '.', '_', '-'");
        return create(name, role);
    }
    if (strcmp(verb, "list") == 0)
        return list();
    if (strcmp(verb, "revoke") == 0) {
        if (optind + 1 >= argc)
            die_usage("tokens revoke: missing the token's NAME");
        return revoke(argv[optind + 1]);
    }
    die_usage("tokens: unknown \"%s\" (create, list or revoke)", verb);
    return EXIT_USAGE;
}
