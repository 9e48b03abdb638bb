/* saga-bench: drives sagas through a running sagad and bench-service and
 * reports what it measured. Run by scripts/bench (`make bench`).
 *
 *   saga-bench --steps K --fail-rate F --payload BYTES
 *              (--closed N | --rate R --duration S)
 *              --sagad-pid P --participant-pids P1,P2 --label TEXT --json FILE
 *
 * Open loop (--rate): sagas are started at R per second on schedule; a
 * saga's latency runs from its intended start, so queueing shows. Closed
 * loop (--closed N): N sagas as fast as they go. Latencies come from the
 * database afterwards: a saga's from its intended start to its last
 * transition, a step's from dispatch to reply. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <uuid.h>

#include "saga/saga.h"
#include "saga_machine.h"
#include "saga_store.h"

typedef struct opts {
    int steps, closed, payload, rate, duration, sagad_pid;
    double fail_rate;
    const char *participant_pids, *label, *json;
} opts;

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* utime + stime of pid, in seconds. */
static double cpu_seconds(int pid)
{
    char path[64], buf[2048], *p;
    unsigned long ut = 0, st = 0;
    FILE *f;
    if (pid <= 0)
        return 0;
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    if ((f = fopen(path, "r")) == NULL)
        return 0;
    if (fgets(buf, sizeof buf, f) == NULL) {
        fclose(f);
        return 0;
    }
    fclose(f);
    p = strrchr(buf, ')');
    if (p == NULL || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
                            &ut, &st) != 2)
        return 0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static long rss_kb(int pid, const char *field)
{
    char path[64], line[256];
    long kb = 0;
    FILE *f;
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    if ((f = fopen(path, "r")) == NULL)
        return 0;
    while (fgets(line, sizeof line, f) != NULL)
        if (strncmp(line, field, strlen(field)) == 0)
            kb = atol(line + strlen(field) + 1);
    fclose(f);
    return kb;
}

static double participants_cpu(const char *pids)
{
    double total = 0;
    char buf[256], *save = NULL, *tok;
    snprintf(buf, sizeof buf, "%s", pids ? pids : "");
    for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
        total += cpu_seconds(atoi(tok));
    return total;
}

static long long commits(PGconn *db)
{
    PGresult *r = PQexec(db, "SELECT xact_commit FROM pg_stat_database"
                             " WHERE datname = current_database()");
    long long n = PQresultStatus(r) == PGRES_TUPLES_OK ? atoll(PQgetvalue(r, 0, 0)) : 0;
    PQclear(r);
    return n;
}

static double query_num(PGconn *db, const char *sql, const char *param)
{
    const char *p[1] = {param};
    PGresult *r =
        PQexecParams(db, sql, param ? 1 : 0, NULL, param ? p : NULL, NULL, NULL, 0);
    double v = 0;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0 && !PQgetisnull(r, 0, 0))
        v = atof(PQgetvalue(r, 0, 0));
    else if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fprintf(stderr, "saga-bench: %s", PQerrorMessage(db));
    PQclear(r);
    return v;
}

/* The definition: K steps of bench.work, each undoable but the last. */
static const saga_definition *define(PGconn *db, saga_defs *defs, int steps, char *name)
{
    saga_def *b;
    json_t *body;
    saga_definition *def = NULL;
    const saga_definition *out = NULL;
    saga_def_problems probs = {0};
    saga_error err = {0};
    int created;
    snprintf(name, 64, "bench_%d", steps);
    b = saga_def_new(name);
    saga_def_default_timeout(b, "30s");
    for (int i = 0; i < steps; i++) {
        char sname[32];
        saga_def_step *s;
        snprintf(sname, sizeof sname, "s%d", i);
        s = saga_def_add_step(b, sname, "bench", "work");
        if (i < steps - 1)
            saga_def_step_compensation(s, "undo");
        saga_def_step_input(s, json_pack("{s:s, s:s}", "fail_at", "${input.fail_at}",
                                         "pad", "${input.pad}"));
    }
    body = saga_def_to_json(b);
    saga_def_free(b);
    if (saga_definition_from_json(body, &def, &probs) != SAGA_OK ||
        saga_store_register_definition(db, defs, def, &created, &err) != SAGA_OK ||
        saga_store_get_definition(db, defs, name, 0, &out, &err) != SAGA_OK) {
        fprintf(stderr, "saga-bench: cannot store the definition: %s %s\n", err.message,
                probs.count ? probs.items[0].message : "");
        out = NULL;
    }
    json_decref(body);
    return out;
}

/* Start one saga, intended at t0 (ms since the epoch), the way services
 * do through libsaga's client: a start request that sagad turns into the
 * saga and its first command (in batches). */
static int start(PGconn *db, const saga_definition *def, const opts *o, const char *pad,
                 int64_t t0, unsigned *seed)
{
    uuid_t u;
    char id[SAGA_ID_LEN + 1], *text;
    int fail_at = -1, rc = SAGA_OK;
    json_t *input;
    PGresult *r;

    if (o->fail_rate > 0 && (double)rand_r(seed) / RAND_MAX < o->fail_rate)
        fail_at = (int)(rand_r(seed) % (unsigned)o->steps);
    input = json_pack("{s:i, s:s, s:I}", "fail_at", fail_at, "pad", pad, "t0",
                      (json_int_t)t0);
    text = json_dumps(input, JSON_COMPACT);
    json_decref(input);
    uuid_generate_random(u);
    uuid_unparse_lower(u, id);
    {
        const char *p[3] = {id, def->name, text};
        r = PQexecParams(db,
                         "INSERT INTO saga.start_request (id, name, input)"
                         " VALUES ($1, $2, $3::jsonb)",
                         3, NULL, p, NULL, NULL, 0);
    }
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        fprintf(stderr, "saga-bench: start: %s", PQerrorMessage(db));
        rc = SAGA_EDB;
    }
    PQclear(r);
    free(text);
    return rc;
}

static void exec(PGconn *db, const char *sql)
{
    PQclear(PQexec(db, sql));
}

int main(int argc, char **argv)
{
    static const struct option lo[] = {{"steps", 1, 0, 'k'},
                                       {"closed", 1, 0, 'n'},
                                       {"rate", 1, 0, 'r'},
                                       {"duration", 1, 0, 'd'},
                                       {"fail-rate", 1, 0, 'f'},
                                       {"payload", 1, 0, 'p'},
                                       {"sagad-pid", 1, 0, 's'},
                                       {"participant-pids", 1, 0, 'P'},
                                       {"label", 1, 0, 'l'},
                                       {"json", 1, 0, 'j'},
                                       {0, 0, 0, 0}};
    opts o = {.steps = 4, .payload = 64, .label = "run"};
    const saga_definition *def;
    saga_defs *defs = saga_defs_new();
    char name[64], *pad;
    unsigned seed = (unsigned)getpid();
    int c, total = 0;
    int64_t began, ended;
    long long c0, c1;
    double cpu_d0, cpu_p0, cpu_d1, cpu_p1;
    PGconn *db;
    char since[32];

    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'k':
            o.steps = atoi(optarg);
            break;
        case 'n':
            o.closed = atoi(optarg);
            break;
        case 'r':
            o.rate = atoi(optarg);
            break;
        case 'd':
            o.duration = atoi(optarg);
            break;
        case 'f':
            o.fail_rate = atof(optarg);
            break;
        case 'p':
            o.payload = atoi(optarg);
            break;
        case 's':
            o.sagad_pid = atoi(optarg);
            break;
        case 'P':
            o.participant_pids = optarg;
            break;
        case 'l':
            o.label = optarg;
            break;
        case 'j':
            o.json = optarg;
            break;
        default:
            fprintf(stderr, "saga-bench: see the comment at the top of saga_bench.c\n");
            return 2;
        }
    }
    if (o.steps < 1 || (o.closed <= 0 && (o.rate <= 0 || o.duration <= 0))) {
        fprintf(
            stderr,
            "saga-bench: need --steps >= 1 and --closed N or --rate R --duration S\n");
        return 2;
    }
    db = PQconnectdb(getenv("SAGA_PG_URL"));
    if (PQstatus(db) != CONNECTION_OK) {
        fprintf(stderr, "saga-bench: %s", PQerrorMessage(db));
        return 3;
    }
    if ((def = define(db, defs, o.steps, name)) == NULL)
        return 1;
    pad = malloc((size_t)o.payload + 1);
    memset(pad, 'x', (size_t)o.payload);
    pad[o.payload] = '\0';
    snprintf(since, sizeof since, "%lld", (long long)saga_now_ms());
    PQclear(PQexec(db, "SELECT pg_stat_force_next_flush()"));
    sleep(1);
    c0 = commits(db);
    cpu_d0 = cpu_seconds(o.sagad_pid);
    cpu_p0 = participants_cpu(o.participant_pids);
    began = mono_ms();
    if (o.closed > 0) {
        /* As fast as it goes: all of them, in batches of 100 per transaction. */
        int64_t now = saga_now_ms();
        for (int i = 0; i < o.closed; i += 100) {
            exec(db, "BEGIN");
            for (int k = i; k < o.closed && k < i + 100; k++)
                total += start(db, def, &o, pad, now, &seed) == SAGA_OK;
            exec(db, "NOTIFY saga_outbox");
            exec(db, "COMMIT");
        }
    } else {
        /* Open loop: each saga at its intended time, whatever happens. */
        int64_t t_start = saga_now_ms();
        int n = o.rate * o.duration;
        for (int i = 0; i < n;) {
            int64_t now = saga_now_ms();
            int due = (int)((now - t_start) * o.rate / 1000) + 1;
            if (due > n)
                due = n;
            if (i < due) {
                exec(db, "BEGIN");
                for (; i < due; i++)
                    total += start(db, def, &o, pad, t_start + (int64_t)i * 1000 / o.rate,
                                   &seed) == SAGA_OK;
                exec(db, "NOTIFY saga_outbox");
                exec(db, "COMMIT");
            } else {
                struct timespec ts = {0, 2 * 1000000L};
                nanosleep(&ts, NULL);
            }
        }
    }
    /* Wait for every saga of this run to end (or 10 minutes). */
    for (int waited = 0; waited < 600000; waited += 50) {
        double open =
            query_num(db,
                      "SELECT count(*) FROM saga.saga WHERE status IN ('running',"
                      " 'compensating') AND created_at >= saga.ts($1::bigint)",
                      since);
        struct timespec ts = {0, 50 * 1000000L};
        if (open == 0)
            break;
        nanosleep(&ts, NULL);
    }
    ended = mono_ms();
    /* Backends report their commits to pg_stat_database lazily (at most
     * every second while busy); let them, and flush this one's. */
    sleep(2);
    PQclear(PQexec(db, "SELECT pg_stat_force_next_flush()"));
    c1 = commits(db);
    cpu_d1 = cpu_seconds(o.sagad_pid);
    cpu_p1 = participants_cpu(o.participant_pids);
    {
        const char *agg = "SELECT percentile_cont($2::float8) WITHIN GROUP (ORDER BY"
                          " saga.ms(updated_at) - (input->>'t0')::bigint)"
                          " FROM saga.saga WHERE created_at >= saga.ts($1::bigint)"
                          " AND status IN ('completed', 'compensated')";
        double secs = (double)(ended - began) / 1000.0;
        double completed =
            query_num(db,
                      "SELECT count(*) FROM saga.saga WHERE status = 'completed'"
                      " AND created_at >= saga.ts($1::bigint)",
                      since);
        double compensated =
            query_num(db,
                      "SELECT count(*) FROM saga.saga WHERE status ="
                      " 'compensated' AND created_at >= saga.ts($1::bigint)",
                      since);
        double steps_done =
            query_num(db,
                      "SELECT count(*) FROM saga.saga_step st JOIN saga.saga s"
                      " ON s.id = st.saga_id WHERE s.created_at >="
                      " saga.ts($1::bigint) AND st.attempts > 0",
                      since);
        double p[3], sp[3];
        const char *q[3] = {"0.5", "0.99", "0.999"};
        for (int i = 0; i < 3; i++) {
            const char *params[2] = {since, q[i]};
            PGresult *r = PQexecParams(db, agg, 2, NULL, params, NULL, NULL, 0);
            p[i] = PQresultStatus(r) == PGRES_TUPLES_OK && !PQgetisnull(r, 0, 0)
                       ? atof(PQgetvalue(r, 0, 0))
                       : 0;
            PQclear(r);
            r = PQexecParams(
                db,
                "SELECT percentile_cont($2::float8) WITHIN GROUP (ORDER BY"
                " saga.ms(st.finished_at) - saga.ms(st.started_at))"
                " FROM saga.saga_step st JOIN saga.saga s ON s.id = st.saga_id"
                " WHERE s.created_at >= saga.ts($1::bigint)"
                " AND st.status IN ('succeeded', 'failed')",
                2, NULL, params, NULL, NULL, 0);
            sp[i] = PQresultStatus(r) == PGRES_TUPLES_OK && !PQgetisnull(r, 0, 0)
                        ? atof(PQgetvalue(r, 0, 0))
                        : 0;
            PQclear(r);
        }
        {
            double ended_n = completed + compensated;
            char line[1024];
            snprintf(
                line, sizeof line,
                "{\"label\": \"%s\", \"mode\": \"%s\", \"steps\": %d, \"fail_rate\": "
                "%.2f,"
                " \"payload\": %d, \"rate\": %d, \"sagas\": %d, \"completed\": %.0f,"
                " \"compensated\": %.0f, \"seconds\": %.2f, \"sagas_per_s\": %.1f,"
                " \"steps_per_s\": %.1f, \"saga_ms_p50\": %.1f, \"saga_ms_p99\": %.1f,"
                " \"saga_ms_p999\": %.1f, \"step_ms_p50\": %.1f, \"step_ms_p99\": %.1f,"
                " \"step_ms_p999\": %.1f, \"commits_per_saga\": %.2f,"
                " \"sagad_cpu_ms_per_saga\": %.3f, \"participant_cpu_ms_per_saga\": %.3f,"
                " \"sagad_rss_kb\": %ld, \"sagad_peak_rss_kb\": %ld}",
                o.label, o.closed > 0 ? "closed" : "open", o.steps, o.fail_rate,
                o.payload, o.rate, total, completed, compensated, secs, ended_n / secs,
                steps_done / secs, p[0], p[1], p[2], sp[0], sp[1], sp[2],
                ended_n > 0 ? (double)(c1 - c0) / ended_n : 0,
                ended_n > 0 ? (cpu_d1 - cpu_d0) * 1000.0 / ended_n : 0,
                ended_n > 0 ? (cpu_p1 - cpu_p0) * 1000.0 / ended_n : 0,
                rss_kb(o.sagad_pid, "VmRSS:"), rss_kb(o.sagad_pid, "VmHWM:"));
            puts(line);
            if (o.json != NULL) {
                FILE *f = fopen(o.json, "a");
                if (f != NULL) {
                    fprintf(f, "%s\n", line);
                    fclose(f);
                }
            }
        }
    }
    free(pad);
    saga_defs_free(defs);
    PQfinish(db);
    return 0;
}
