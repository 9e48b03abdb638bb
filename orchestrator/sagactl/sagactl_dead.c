/* sagactl dead list | show | replay | purge: what sagad set aside in
 * saga.dead_letter (a reply it could not decode or apply, a saga whose
 * timer failed, a start request it could not start), and putting it back
 * once the cause is repaired. A replayed reply is produced again to its
 * topic with its key (Kafka from --brokers or SAGA_KAFKA_BROKERS); a timer
 * is made due now; a start request is made pending again. The operator
 * and the reason are kept on the row. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "saga_duration.h"
#include "sagactl.h"

static const char list_sql[] =
    "SELECT coalesce(json_agg(d ORDER BY d.id DESC), '[]') FROM ("
    " SELECT id, source, topic, kafka_partition AS partition, kafka_offset AS offset,"
    " msg_key AS key, ref, payload_bytes, reason, attempts, saga.iso(created_at) AS"
    " created_at, created_by, saga.iso(replayed_at) AS replayed_at, replayed_by,"
    " replay_reason FROM saga.dead_letter"
    " WHERE ($1::text IS NULL OR source = $1)"
    " AND ($2::bigint IS NULL OR created_at >= now() - make_interval(secs => $2::bigint"
    " / 1000.0))"
    " AND ($3::bool OR replayed_at IS NULL)"
    " ORDER BY id DESC LIMIT $4::int) d";

static const char show_sql[] =
    "SELECT row_to_json(d) FROM ("
    " SELECT id, source, topic, kafka_partition AS partition, kafka_offset AS offset,"
    " msg_key AS key, ref, payload_bytes, length(payload) < payload_bytes AS truncated,"
    " encode(payload, 'escape') AS payload, reason, attempts,"
    " saga.iso(created_at) AS created_at, created_by, saga.iso(replayed_at) AS"
    " replayed_at, replayed_by, replay_reason FROM saga.dead_letter WHERE id = $1::bigint"
    ") d";

static void help(void)
{
    printf("usage: sagactl dead list [--source reply|timer|start_request|child_link]\n"
           "                         [--since DUR]\n"
           "                         [--limit N] [--all] [--json]\n"
           "       sagactl dead show ID [--json]\n"
           "       sagactl dead replay ID --reason TEXT [--as TEXT] [--brokers LIST]\n"
           "       sagactl dead purge --older-than DUR\n\n"
           "What sagad set aside so that it could not stall the work around it: a\n"
           "reply it could not decode or whose transaction failed alone 3 times, a\n"
           "saga whose timer failed the same way (taken off the timers), a start\n"
           "request it could not start (marked processed with the reason).\n"
           "list: newest first, not yet replayed (--all: those too).\n"
           "replay: a reply is produced again to its topic with its key (Kafka from\n"
           "--brokers or SAGA_KAFKA_BROKERS); a timer is due again now; a start request\n"
           "is pending again. Refused when it was replayed already or its message was\n"
           "kept only in part (over 64 KiB). The operator (the database role; --as\n"
           "TEXT: on whose behalf) and the reason are kept on the row.\n"
           "purge: delete dead letters older than DUR.\n"
           "Exit codes: 0 ok, 1 not found or refused, 2 usage, 3 database.\n");
}

static int dead_list(int argc, char **argv)
{
    const char *source = NULL, *since = NULL, *limit = "50", *all = "false";
    char since_ms[32], limit_buf[32];
    json_t *rows;
    PGconn *db;
    static const struct option opts[] = {
        {"source", required_argument, NULL, 's'}, {"since", required_argument, NULL, 'S'},
        {"limit", required_argument, NULL, 'l'},  {"all", no_argument, NULL, 'a'},
        {"json", no_argument, NULL, 'j'},         {NULL, 0, NULL, 0}};
    for (int c; (c = sagactl_getopt("dead list", argc, argv, opts)) != -1;) {
        if (c == 's') {
            source = optarg;
            if (strcmp(source, "reply") != 0 && strcmp(source, "timer") != 0 &&
                strcmp(source, "start_request") != 0 && strcmp(source, "child_link") != 0)
                die_usage("dead list: --source is reply, timer, start_request or "
                          "child_link, not \"%s\"",
                          source);
        } else if (c == 'S') {
            snprintf(since_ms, sizeof since_ms, "%lld",
                     (long long)parse_duration_opt("dead list", "--since", optarg, "1h"));
            since = since_ms;
        } else if (c == 'l') {
            snprintf(limit_buf, sizeof limit_buf, "%ld",
                     parse_number("dead list", "--limit", optarg, 1, 100000));
            limit = limit_buf;
        } else if (c == 'a') {
            all = "true";
        } else {
            want_json = 1;
        }
    }
    if (optind < argc)
        die_usage("dead list: unexpected argument \"%s\"", argv[optind]);
    db = connect_db(1);
    {
        const char *p[4] = {source, since, all, limit};
        rows = query_json(db, list_sql, 4, p);
    }
    PQfinish(db);
    if (want_json) {
        print_json(rows);
    } else if (json_array_size(rows) == 0) {
        printf("no dead letters\n");
    } else {
        size_t i;
        json_t *d;
        printf("%-8s %-20s %-13s %-44s %s\n", "ID", "SET ASIDE", "SOURCE", "WHERE",
               "REASON");
        json_array_foreach(rows, i, d)
        {
            char where[200], when[24];
            const char *reason = str(d, "reason");
            if (json_is_string(json_object_get(d, "topic")))
                snprintf(where, sizeof where, "%s[%lld]@%lld", str(d, "topic"),
                         (long long)json_integer_value(json_object_get(d, "partition")),
                         (long long)json_integer_value(json_object_get(d, "offset")));
            else
                snprintf(where, sizeof where, "%s", str(d, "ref"));
            snprintf(when, sizeof when, "%.19s", str(d, "created_at"));
            for (char *c = when; *c; c++)
                if (*c == 'T')
                    *c = ' ';
            printf("%-8lld %-20s %-13s %-44s %.100s%s\n",
                   (long long)json_integer_value(json_object_get(d, "id")), when,
                   str(d, "source"), where, reason, strlen(reason) > 100 ? "..." : "");
        }
    }
    json_decref(rows);
    return EXIT_OK;
}

/* After the options: the dead letter's id, the one operand. */
static const char *need_id(int argc, char **argv, const char *cmd)
{
    char what[32];
    const char *id;
    snprintf(what, sizeof what, "dead %s", cmd);
    id = sagactl_operand(what, argc, argv);
    if (id == NULL)
        die_usage("dead %s: no dead letter ID given", cmd);
    parse_number(cmd, "ID", id, 1, 9223372036854775807L);
    return id;
}

static int dead_show(int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
                                         {NULL, 0, NULL, 0}};
    const char *id;
    json_t *d;
    PGconn *db;
    while (sagactl_getopt("dead show", argc, argv, opts) != -1)
        want_json = 1;
    id = need_id(argc, argv, "show");
    db = connect_db(1);
    {
        const char *p[1] = {id};
        d = query_json(db, show_sql, 1, p);
    }
    PQfinish(db);
    if (d == NULL) {
        fprintf(stderr, "sagactl: no dead letter %s\n", id);
        return EXIT_REFUSED;
    }
    if (want_json) {
        print_json(d);
    } else {
        printf("dead letter %s (%s), set aside %s by %s after %lld attempt(s)\n", id,
               str(d, "source"), str(d, "created_at"), str(d, "created_by"),
               (long long)json_integer_value(json_object_get(d, "attempts")));
        if (json_is_string(json_object_get(d, "topic")))
            printf("  where:    %s[%lld]@%lld, key %s\n", str(d, "topic"),
                   (long long)json_integer_value(json_object_get(d, "partition")),
                   (long long)json_integer_value(json_object_get(d, "offset")),
                   str(d, "key"));
        printf("  concerns: %s\n", str(d, "ref"));
        printf("  reason:   %s\n", str(d, "reason"));
        printf("  message:  %lld bytes%s\n",
               (long long)json_integer_value(json_object_get(d, "payload_bytes")),
               json_is_true(json_object_get(d, "truncated")) ? " (the first 65536 kept)"
                                                             : "");
        if (json_is_string(json_object_get(d, "payload")))
            printf("  %.2000s%s\n", str(d, "payload"),
                   strlen(str(d, "payload")) > 2000 ? "..." : "");
        if (json_is_string(json_object_get(d, "replayed_at")))
            printf("  replayed: %s by %s: %s\n", str(d, "replayed_at"),
                   str(d, "replayed_by"), str(d, "replay_reason"));
    }
    json_decref(d);
    return EXIT_OK;
}

/* Produce payload to topic with key and wait for the broker's word. */
static int produce_again(const char *brokers, const char *topic, const char *key,
                         const char *payload, size_t len, char *why, size_t whysz)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *p;
    rd_kafka_resp_err_t err;
    if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, errstr, sizeof errstr) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "enable.idempotence", "true", errstr, sizeof errstr) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "message.timeout.ms", "15000", errstr, sizeof errstr) !=
            RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        snprintf(why, whysz, "%s", errstr);
        return -1;
    }
    {
        /* TLS and SASL as sagad has them (docs/SECURITY.md). */
        saga_error e = {0};
        if (saga__kafka_apply_options(conf, getenv("SAGA_KAFKA_OPTIONS"),
                                      getenv("SAGA_KAFKA_OPTIONS_FILE"), &e) != SAGA_OK) {
            rd_kafka_conf_destroy(conf);
            snprintf(why, whysz, "%s", e.message);
            return -1;
        }
    }
    if ((p = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr)) == NULL) {
        rd_kafka_conf_destroy(conf);
        snprintf(why, whysz, "%s", errstr);
        return -1;
    }
    err = rd_kafka_producev(p, RD_KAFKA_V_TOPIC(topic),
                            RD_KAFKA_V_KEY(key, key ? strlen(key) : 0),
                            RD_KAFKA_V_VALUE((void *)payload, len),
                            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
        err = rd_kafka_flush(p, 20000);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR && rd_kafka_outq_len(p) > 0)
        err = RD_KAFKA_RESP_ERR__TIMED_OUT;
    rd_kafka_destroy(p);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(why, whysz, "producing to %s: %s", topic, rd_kafka_err2str(err));
        return -1;
    }
    return 0;
}

static int refuse(PGconn *db, const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "sagactl: dead replay: ");
    fprintf(stderr, fmt, a, b);
    fputc('\n', stderr);
    PQclear(PQexec(db, "ROLLBACK"));
    PQfinish(db);
    return EXIT_REFUSED;
}

static int dead_replay(int argc, char **argv)
{
    static const struct option opts[] = {{"reason", required_argument, NULL, 'r'},
                                         {"as", required_argument, NULL, 'a'},
                                         {"brokers", required_argument, NULL, 'b'},
                                         {NULL, 0, NULL, 0}};
    const char *id, *reason = NULL, *as = NULL;
    const char *brokers = getenv("SAGA_KAFKA_BROKERS");
    const char *p[1] = {NULL};
    PGresult *r;
    PGconn *db;
    char source[32];
    for (int c; (c = sagactl_getopt("dead replay", argc, argv, opts)) != -1;) {
        if (c == 'r')
            reason = optarg;
        else if (c == 'a')
            as = optarg;
        else
            brokers = optarg;
    }
    id = need_id(argc, argv, "replay");
    p[0] = id;
    if (reason == NULL || reason[0] == '\0')
        die_usage("dead replay: --reason TEXT is required (it is kept on the row)");
    db = connect_db(1);
    PQclear(PQexec(db, "BEGIN"));
    r = PQexecParams(
        db,
        "SELECT source, topic, msg_key, ref, payload, payload_bytes,"
        " length(payload) < payload_bytes, saga.iso(replayed_at), replayed_by"
        " FROM saga.dead_letter WHERE id = $1::bigint FOR UPDATE",
        1, NULL, p, NULL, NULL, 1 /* binary: the payload as it was */);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "sagactl: reading dead letter %s: %s", id, PQerrorMessage(db));
        PQclear(r);
        PQfinish(db);
        return EXIT_DB;
    }
    if (PQntuples(r) == 0) {
        PQclear(r);
        return refuse(db, "no dead letter %s%s", id, "");
    }
    if (!PQgetisnull(r, 0, 7)) {
        char when[128];
        snprintf(when, sizeof when, "%s", PQgetvalue(r, 0, 7));
        PQclear(r);
        return refuse(db, "dead letter %s was already replayed (%s)", id, when);
    }
    snprintf(source, sizeof source, "%s", PQgetvalue(r, 0, 0));
    if (strcmp(source, "reply") == 0) {
        char why[600], topic[256], key[160];
        const char *payload = PQgetvalue(r, 0, 4);
        int len = PQgetlength(r, 0, 4);
        if (PQgetvalue(r, 0, 6)[0] != 0) {
            PQclear(r);
            return refuse(db,
                          "dead letter %s kept only the first 65536 bytes of its "
                          "message%s: it cannot be replayed",
                          id, "");
        }
        if (brokers == NULL || brokers[0] == '\0') {
            PQclear(r);
            PQclear(PQexec(db, "ROLLBACK"));
            PQfinish(db);
            die_usage("dead replay: a reply goes back to Kafka: pass --brokers LIST or "
                      "set SAGA_KAFKA_BROKERS");
        }
        snprintf(topic, sizeof topic, "%s", PQgetvalue(r, 0, 1));
        snprintf(key, sizeof key, "%s", PQgetvalue(r, 0, 2));
        if (produce_again(brokers, topic, PQgetisnull(r, 0, 2) ? NULL : key, payload,
                          (size_t)len, why, sizeof why) != 0) {
            PQclear(r);
            return refuse(db, "dead letter %s: %s", id, why);
        }
    } else {
        const char *q[1] = {PQgetvalue(r, 0, 3)};
        PGresult *u = PQexecParams(
            db,
            strcmp(source, "timer") == 0
                ? "UPDATE saga.saga SET wake_at = now() WHERE id = $1::uuid AND status IN"
                  " ('running', 'compensating')"
            /* A link between a child and its parent: delivered again
             * (each side ignores what it no longer waits for). */
            : strcmp(source, "child_link") == 0
                ? "UPDATE saga.saga_child SET failures = 0, retry_at = NULL,"
                  " notified_at = CASE WHEN ended_at IS NULL THEN notified_at END,"
                  " compensate_done_at = CASE WHEN compensate_at IS NULL THEN"
                  " compensate_done_at END WHERE child_id = $1::uuid"
                : "UPDATE saga.start_request SET processed_at = NULL, error = NULL"
                  " WHERE id = $1::uuid AND NOT EXISTS (SELECT 1 FROM saga.saga s WHERE"
                  " s.id = $1::uuid)",
            1, NULL, q, NULL, NULL, 0);
        int ok = PQresultStatus(u) == PGRES_COMMAND_OK && atoi(PQcmdTuples(u)) == 1;
        PQclear(u);
        if (!ok) {
            char ref[64];
            snprintf(ref, sizeof ref, "%s", PQgetvalue(r, 0, 3));
            PQclear(r);
            return refuse(db,
                          "dead letter %s: %s is no longer waiting (ended, purged or "
                          "started meanwhile)",
                          id, ref);
        }
        PQclear(PQexec(db, "NOTIFY saga_outbox"));
    }
    PQclear(r);
    {
        const char *u[3] = {id, as, reason};
        r = PQexecParams(
            db,
            "UPDATE saga.dead_letter SET replayed_at = now(), replayed_by = session_user"
            " || coalesce(' (on behalf of ' || nullif($2, '') || ')', ''),"
            " replay_reason = $3 WHERE id = $1::bigint",
            3, NULL, u, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            fprintf(stderr, "sagactl: dead replay: %s", PQerrorMessage(db));
            PQclear(r);
            PQfinish(db);
            return EXIT_DB;
        }
        PQclear(r);
    }
    r = PQexec(db, "COMMIT");
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        fprintf(stderr, "sagactl: dead replay: %s", PQerrorMessage(db));
        PQclear(r);
        PQfinish(db);
        return EXIT_DB;
    }
    PQclear(r);
    PQfinish(db);
    printf("dead letter %s replayed (%s)\n", id,
           strcmp(source, "reply") == 0   ? "produced again"
           : strcmp(source, "timer") == 0 ? "its saga's timer is due now"
                                          : "the start request is pending again");
    return EXIT_OK;
}

static int dead_purge(int argc, char **argv)
{
    const char *older = NULL;
    char ms[32];
    PGconn *db;
    PGresult *r;
    static const struct option opts[] = {{"older-than", required_argument, NULL, 'o'},
                                         {NULL, 0, NULL, 0}};
    while (sagactl_getopt("dead purge", argc, argv, opts) != -1)
        older = optarg;
    if (optind < argc)
        die_usage("dead purge: unexpected argument \"%s\"", argv[optind]);
    if (older == NULL)
        die_usage("dead purge: --older-than DUR is required");
    snprintf(ms, sizeof ms, "%lld",
             (long long)parse_duration_opt("dead purge", "--older-than", older, "30d"));
    db = connect_db(1);
    {
        const char *p[1] = {ms};
        r = PQexecParams(db,
                         "DELETE FROM saga.dead_letter WHERE created_at < now() -"
                         " make_interval(secs => $1::bigint / 1000.0)",
                         1, NULL, p, NULL, NULL, 0);
    }
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        fprintf(stderr, "sagactl: dead purge: %s", PQerrorMessage(db));
        PQclear(r);
        PQfinish(db);
        return EXIT_DB;
    }
    printf("%s dead letter(s) deleted\n", PQcmdTuples(r));
    PQclear(r);
    PQfinish(db);
    return EXIT_OK;
}

int cmd_dead(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0) {
        help();
        return argc < 2 ? EXIT_USAGE : EXIT_OK;
    }
    for (int k = 2; k < argc; k++)
        if (strcmp(argv[k], "--help") == 0) {
            help();
            return EXIT_OK;
        }
    /* The subcommand parses from argv[1] on, as a command does. */
    optind = 0;
    if (strcmp(argv[1], "list") == 0)
        return dead_list(argc - 1, argv + 1);
    if (strcmp(argv[1], "show") == 0)
        return dead_show(argc - 1, argv + 1);
    if (strcmp(argv[1], "replay") == 0)
        return dead_replay(argc - 1, argv + 1);
    if (strcmp(argv[1], "purge") == 0)
        return dead_purge(argc - 1, argv + 1);
    die_usage("dead: unknown subcommand \"%s\" (list, show, replay, purge)", argv[1]);
}
