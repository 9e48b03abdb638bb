/* sagad: the saga orchestrator daemon. */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "saga/saga.h"
#include "saga_api.h"
#include "saga_duration.h"
#include "saga_engine.h"
#include "saga_http.h"
#include "saga_log.h"
#include "saga_shared.h"
#include "saga_store.h"
#include "sagad_http.h"

static saga_engine *engine;
/* The URL read from --db-file: the process's until it exits. */
static char *db_url_read;

static void on_signal(int sig)
{
    (void)sig;
    saga_engine_stop(engine);
}

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: sagad [options]\n"
        "Runs sagas: sends step commands over Kafka, applies replies, retries,\n"
        "times out and compensates; every transition committed to PostgreSQL.\n\n"
        "  --db URL            PostgreSQL (default $SAGA_PG_URL)\n"
        "  --db-file F         read the URL from file F instead (default\n"
        "                      $SAGA_PG_URL_FILE): a password stays off the command\n"
        "                      line and out of the environment; ~/.pgpass works too\n"
        "  --brokers LIST      Kafka bootstrap servers (default $SAGA_KAFKA_BROKERS)\n"
        "  --definitions DIR   folder of saga definitions, *.json (default ./sagas)\n"
        "  --prefix P          topic prefix (default $SAGA_TOPIC_PREFIX, else saga.)\n"
        "  --log-level L       debug, info, warn, error (default info)\n"
        "  --log-format F      human, json, or auto: human on a terminal, else JSON\n"
        "                      lines (default $SAGA_LOG_FORMAT, else auto)\n"
        "  --instance-id ID    stable id of this sagad (default $SAGA_INSTANCE_ID): a\n"
        "                      restart with the same id resumes consuming at once\n"
        "                      (Kafka static membership); unique per running sagad\n"
        "  --name NAME         this instance's name on the commands it sends (default\n"
        "                      $SAGA_NAME, else the host name); give each sagad\n"
        "                      sharing a database its own, and keep it on restart\n"
        "  --group ID          Kafka consumer group of the reply consumers (default\n"
        "                      $SAGA_KAFKA_GROUP, else sagad): the sagad sharing a\n"
        "                      database share one; give each database's sagad group\n"
        "                      (sagas spread over several databases) its own\n"
        "  --outbox-lease S    seconds before another instance takes over the unsent\n"
        "                      commands of one that stopped (default 10)\n"
        "  --kafka-options L   librdkafka settings key=value,... applied last (default\n"
        "                      $SAGA_KAFKA_OPTIONS), e.g. linger.ms=0\n"
        "  --kafka-options-file F  more settings from file F, one key=value a line\n"
        "                      (values may hold commas; default\n"
        "                      $SAGA_KAFKA_OPTIONS_FILE): TLS, SASL and their secrets\n"
        "  --key-dir DIR       signing keys per service, DIR/<service>.key (default\n"
        "                      $SAGA_KEY_DIR): commands to a service with a key file\n"
        "                      are signed and its replies must be (docs/SECURITY.md)\n"
        "  --shared-replies    also accept replies on the shared <prefix>reply topic,\n"
        "                      as sagad before 0.3 asked for them: during an upgrade\n"
        "                      only (default: $SAGA_SHARED_REPLIES=1)\n"
        "  --batch N           replies per transaction at most (default 500)\n"
        "  --http ADDR:PORT    serve /metrics, /healthz and /readyz there (default\n"
        "                      $SAGA_HTTP; none when unset), e.g. 127.0.0.1:9464;\n"
        "                      port 0 picks a free one (logged), and the HTTP\n"
        "                      API, /v1 (docs/API.md: bearer tokens, except on\n"
        "                      loopback while none exist)\n"
        "  --metrics ADDR:PORT  serve /metrics, /healthz and /readyz there instead\n"
        "                      (default $SAGA_METRICS), plain HTTP, no token: --http\n"
        "                      then serves the API alone\n"
        "  --tls-cert FILE     the API's listener over TLS with this PEM certificate\n"
        "                      (chain) (default $SAGA_TLS_CERT) ...\n"
        "  --tls-key FILE      ... and its PEM private key, a file others may not\n"
        "                      read (default $SAGA_TLS_KEY)\n"
        "  --trace-url URL     the console links a trace id to this tracing UI's URL,\n"
        "                      {trace_id} replaced (default $SAGA_TRACE_URL)\n"
        "  --breaker-failures N  transient failures in a row (retry replies,\n"
        "                      timeouts) that open a service's circuit breaker\n"
        "                      (default 5; 0 turns the breaker off)\n"
        "  --breaker-cooldown D  how long an open breaker holds commands before a\n"
        "                      probe (default 30s; doubles after a failed probe, up\n"
        "                      to 10 times)\n"
        "  --max-in-flight N   bulkhead: commands per service sent and not answered,\n"
        "                      at most (default 0: no cap); per instance\n"
        "  --service-limits L  per-service caps, e.g. payment=50,inventory=0\n"
        "  --observe-interval D  how often gauges are read from the database and\n"
        "                      services' state published for sagactl (default 5s)\n"
        "  --help              this text\n");
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Load and validate every *.json in dir. Prints every problem; returns the
 * number of invalid files (or -1 when the folder cannot be read). */
/* The database's max_definition_bytes (saga.limits), so that the folder is
 * held to the limit every other door applies; the default when it cannot
 * be read (the engine then says why it cannot start). */
static int64_t definition_limit(const char *db_url)
{
    int64_t v = 0;
    PGconn *db = PQconnectdb(db_url);
    if (PQstatus(db) == CONNECTION_OK) {
        saga__pq_quiet(db);
        if (saga_store_limit(db, "max_definition_bytes", &v, NULL) != SAGA_OK)
            v = 0;
    }
    PQfinish(db);
    return v;
}

static int load_definitions(const char *dir, int64_t max_bytes, saga_definition ***out,
                            int *n)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char **names = NULL;
    int nnames = 0, bad = 0;

    *out = NULL;
    *n = 0;
    if (d == NULL) {
        saga_log(SAGA_LOG_ERROR, "cannot open definitions folder %s: %s", dir,
                 strerror(errno));
        return -1;
    }
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        char **nn;
        if (len < 6 || strcmp(e->d_name + len - 5, ".json") != 0)
            continue;
        nn = realloc(names, sizeof *names * (size_t)(nnames + 1));
        if (nn == NULL)
            break;
        names = nn;
        names[nnames++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, (size_t)nnames, sizeof *names, cmp_str);
    *out = calloc((size_t)nnames + 1, sizeof **out);
    for (int i = 0; i < nnames; i++) {
        char path[4096];
        saga_def_problems probs = {.max_bytes = max_bytes};
        saga_definition *def = NULL;
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (saga_definition_load_file(path, &def, &probs) != SAGA_OK) {
            bad++;
            for (int k = 0; k < probs.count && k < 64; k++)
                saga_log(SAGA_LOG_ERROR, "%s: %s: %s", path, probs.items[k].where,
                         probs.items[k].message);
        } else {
            for (int k = 0; k < *n; k++)
                if (strcmp((*out)[k]->name, def->name) == 0) {
                    saga_log(SAGA_LOG_ERROR,
                             "%s: name \"%s\" is used by another file too", path,
                             def->name);
                    bad++;
                }
            (*out)[(*n)++] = def;
        }
        free(names[i]);
    }
    free(names);
    return bad;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"db", required_argument, 0, 'd'},
        {"brokers", required_argument, 0, 'b'},
        {"definitions", required_argument, 0, 'D'},
        {"prefix", required_argument, 0, 'p'},
        {"log-level", required_argument, 0, 'l'},
        {"log-format", required_argument, 0, 'F'},
        {"instance-id", required_argument, 0, 'i'},
        {"name", required_argument, 0, 'n'},
        {"group", required_argument, 0, 'g'},
        {"outbox-lease", required_argument, 0, 'L'},
        {"kafka-options", required_argument, 0, 'k'},
        {"batch", required_argument, 0, 'B'},
        {"http", required_argument, 0, 'H'},
        {"metrics", required_argument, 0, 'M'},
        {"tls-cert", required_argument, 0, 'C'},
        {"tls-key", required_argument, 0, 'T'},
        {"trace-url", required_argument, 0, 'Z'},
        {"breaker-failures", required_argument, 0, 'f'},
        {"breaker-cooldown", required_argument, 0, 'c'},
        {"max-in-flight", required_argument, 0, 'm'},
        {"service-limits", required_argument, 0, 's'},
        {"observe-interval", required_argument, 0, 'o'},
        {"db-file", required_argument, 0, 'U'},
        {"kafka-options-file", required_argument, 0, 'K'},
        {"key-dir", required_argument, 0, 'x'},
        {"shared-replies", no_argument, 0, 'R'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    saga_engine_config cfg = {0};
    const char *dir = "sagas";
    sagad_http_opts ho = {.http = getenv("SAGA_HTTP"),
                          .metrics = getenv("SAGA_METRICS"),
                          .tls_cert = getenv("SAGA_TLS_CERT"),
                          .tls_key = getenv("SAGA_TLS_KEY"),
                          .trace_url = getenv("SAGA_TRACE_URL")};
    sagad_http served = {0};
    saga_definition **defs;
    saga_engine_stats st;
    saga_error err = {0};
    int ndefs, c, rc, bad;
    const char *db_file = getenv("SAGA_PG_URL_FILE");

    cfg.db_url = getenv("SAGA_PG_URL");
    cfg.brokers = getenv("SAGA_KAFKA_BROKERS");
    cfg.topic_prefix = getenv("SAGA_TOPIC_PREFIX");
    cfg.instance_id = getenv("SAGA_INSTANCE_ID");
    cfg.name = getenv("SAGA_NAME");
    cfg.group_id = getenv("SAGA_KAFKA_GROUP");
    cfg.kafka_options = getenv("SAGA_KAFKA_OPTIONS");
    cfg.kafka_options_file = getenv("SAGA_KAFKA_OPTIONS_FILE");
    cfg.key_dir = getenv("SAGA_KEY_DIR");
    cfg.shared_replies = getenv("SAGA_SHARED_REPLIES") != NULL &&
                         strcmp(getenv("SAGA_SHARED_REPLIES"), "1") == 0;
    if (getenv("SAGA_LOG_FORMAT") != NULL && *getenv("SAGA_LOG_FORMAT") != '\0') {
        if (saga_log_parse_format(getenv("SAGA_LOG_FORMAT")) < 0) {
            fprintf(stderr, "sagad: SAGA_LOG_FORMAT: unknown format \"%s\"\n",
                    getenv("SAGA_LOG_FORMAT"));
            return 2;
        }
        saga_log_set_format(
            (saga_log_format)saga_log_parse_format(getenv("SAGA_LOG_FORMAT")));
    }
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            cfg.db_url = optarg;
            break;
        case 'b':
            cfg.brokers = optarg;
            break;
        case 'D':
            dir = optarg;
            break;
        case 'p':
            cfg.topic_prefix = optarg;
            break;
        case 'l':
            if (saga_log_parse_level(optarg) < 0) {
                fprintf(stderr, "sagad: --log-level: unknown level \"%s\"\n", optarg);
                return 2;
            }
            saga_log_set_level((saga_log_level)saga_log_parse_level(optarg));
            break;
        case 'F':
            if (saga_log_parse_format(optarg) < 0) {
                fprintf(stderr, "sagad: --log-format: unknown format \"%s\"\n", optarg);
                return 2;
            }
            saga_log_set_format((saga_log_format)saga_log_parse_format(optarg));
            break;
        case 'i':
            cfg.instance_id = optarg;
            break;
        case 'n':
            cfg.name = optarg;
            break;
        case 'g':
            cfg.group_id = optarg;
            break;
        case 'k':
            cfg.kafka_options = optarg;
            break;
        case 'U':
            db_file = optarg;
            break;
        case 'K':
            cfg.kafka_options_file = optarg;
            break;
        case 'x':
            cfg.key_dir = optarg;
            break;
        case 'R':
            cfg.shared_replies = 1;
            break;
        case 'L':
        case 'B': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end != '\0' || v < 1 || v > 100000) {
                fprintf(
                    stderr,
                    "sagad: --%s: expected a whole number from 1 to 100000, got \"%s\"\n",
                    c == 'L' ? "outbox-lease" : "batch", optarg);
                return 2;
            }
            if (c == 'L')
                cfg.outbox_lease_s = (int)v;
            else
                cfg.batch_max = (int)v;
            break;
        }
        case 'H':
            ho.http = optarg;
            break;
        case 'M':
            ho.metrics = optarg;
            break;
        case 'C':
            ho.tls_cert = optarg;
            break;
        case 'T':
            ho.tls_key = optarg;
            break;
        case 'Z':
            ho.trace_url = optarg;
            break;
        case 'f':
        case 'm': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end != '\0' || end == optarg || v < 0 || v > 1000000) {
                fprintf(stderr,
                        "sagad: --%s: expected a whole number from 0 to 1000000, got "
                        "\"%s\"\n",
                        c == 'f' ? "breaker-failures" : "max-in-flight", optarg);
                return 2;
            }
            if (c == 'm')
                cfg.gate.max_in_flight = (int)v;
            else if (v == 0)
                cfg.gate.breaker_off = 1;
            else
                cfg.gate.breaker.failure_threshold = (int)v;
            break;
        }
        case 'c':
        case 'o': {
            int64_t ms;
            if (saga_duration_parse(optarg, &ms) != 0 || ms < 1 || ms > 86400000) {
                fprintf(stderr,
                        "sagad: --%s: expected a duration such as 500ms, 30s or 2m, got "
                        "\"%s\"\n",
                        c == 'c' ? "breaker-cooldown" : "observe-interval", optarg);
                return 2;
            }
            if (c == 'c')
                cfg.gate.breaker.cooldown_ms = ms;
            else
                cfg.observe_interval_ms = (int)ms;
            break;
        }
        case 's':
            cfg.gate.service_limits = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "sagad: unexpected argument \"%s\"\n", argv[optind]);
        return 2;
    }
    if (db_file != NULL && *db_file != '\0') {
        if (saga__read_secret(db_file, &db_url_read, &err) != SAGA_OK) {
            fprintf(stderr, "sagad: --db-file: %s\n", err.message);
            return 2;
        }
        cfg.db_url = db_url_read;
    }
    if (cfg.db_url == NULL || cfg.brokers == NULL) {
        fprintf(stderr,
                "sagad: %s is not set (use --db / --brokers or SAGA_PG_URL / "
                "SAGA_KAFKA_BROKERS)\n",
                cfg.db_url == NULL ? "the database URL" : "the Kafka brokers");
        return 2;
    }
    {
        /* Settings errors are usage errors: said before connecting. */
        saga_gate *probe = NULL;
        if (saga_gate_new(&cfg.gate, &probe, &err) != SAGA_OK) {
            fprintf(stderr, "sagad: %s\n", err.message);
            return 2;
        }
        saga_gate_free(probe);
        if ((rc = sagad_http_check(&ho, &err)) != SAGA_OK) {
            fprintf(stderr, "sagad: %s\n", err.message);
            return rc == SAGA_EINVAL ? 2 : 1;
        }
    }
    bad = load_definitions(dir, definition_limit(cfg.db_url), &defs, &ndefs);
    if (bad != 0) {
        for (int i = 0; i < ndefs; i++)
            saga_definition_free(defs[i]);
        free(defs);
        saga_log(SAGA_LOG_ERROR, "refusing to start: %s",
                 bad < 0 ? "no definitions folder" : "invalid definitions (see above)");
        return 1;
    }
    if (ndefs == 0)
        saga_log(SAGA_LOG_WARN,
                 "no definitions in %s; sagas of stored definitions still run", dir);
    rc = saga_engine_new(&cfg, defs, ndefs, &engine, &err);
    free(defs);
    if (rc != SAGA_OK) {
        saga_log(SAGA_LOG_ERROR, "cannot start: %s", err.message);
        return rc == SAGA_EDB ? 3 : 1;
    }
    if ((rc = sagad_http_start(&ho, engine, cfg.db_url, &served, &err)) != SAGA_OK) {
        saga_log(SAGA_LOG_ERROR, "cannot start: %s", err.message);
        saga_engine_free(engine);
        return rc == SAGA_EINVAL ? 2 : 1;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);
    rc = saga_engine_run(engine, &err);
    sagad_http_stop(&served); /* before the engine's registry goes */
    saga_engine_get_stats(engine, &st);
    saga_log(SAGA_LOG_INFO,
             "stopped: %llu replies applied, %llu duplicates ignored, %llu rejected, "
             "%llu malformed, %llu timers fired, %llu commands sent, %llu send failures, "
             "%llu set aside (sagactl dead list), %llu commands too large",
             (unsigned long long)st.replies_applied,
             (unsigned long long)st.replies_ignored,
             (unsigned long long)st.replies_rejected, (unsigned long long)st.malformed,
             (unsigned long long)st.timers_fired, (unsigned long long)st.commands_sent,
             (unsigned long long)st.send_failures, (unsigned long long)st.dead_letters,
             (unsigned long long)st.commands_refused);
    saga_engine_free(engine);
    if (rc != SAGA_OK) {
        saga_log(SAGA_LOG_ERROR, "%s", err.message);
        return 1;
    }
    return 0;
}
