/* saga-bench: drives sagas through a running sagad and bench-service and
 * reports what it measured. Run by scripts/bench (`make bench`).
 *
 *   saga-bench --steps K [--fail-rate F] [--payload BYTES]
 *              (--closed N [--duration S] | --rate R --duration S)
 *              [--sagad-pids P1,P2] [--participant-pids P1,P2]
 *              [--participant-db NAME] [--label TEXT] [--json FILE]
 *              [--interval S]
 *
 * Open loop (--rate R --duration S): sagas are started at R per second on
 * schedule for S seconds; a saga's latency runs from its intended start,
 * so queueing shows. Closed loop with --duration: N sagas kept in flight
 * for S seconds (a new one started as others end). Closed loop without
 * it: N sagas at once, as fast as they go. Latencies come from the
 * database afterwards: a saga's from its intended start to its last
 * transition, a step's from dispatch to reply. Exits 1 when a saga could
 * not be started or was left unfinished (still running after 10 minutes,
 * or stopped as failed).
 *
 * --interval S (closed loop with a duration): every S seconds, the sagas
 * that ended in those S seconds (started less still open: exact at each
 * reading), printed on stderr as they come, so that a stall shows, and
 * with each the cluster's WAL written (pg_current_wal_lsn), its full-page
 * images (pg_stat_wal), checkpoints begun (pg_stat_bgwriter) and the
 * vacuums running at that moment (pg_stat_progress_vacuum); the same in
 * the JSON line as "intervals". */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "saga/saga.h"
#include "saga_machine.h"
#include "saga_store.h"
#include "saga_shared.h"

#define MAX_PIDS 16

typedef struct opts {
    int steps, closed, payload, rate, duration, interval;
    double fail_rate;
    int sagad_pids[MAX_PIDS], nsagad;
    int participant_pids[MAX_PIDS], nparticipant;
    const char *participant_db, *label, *json;
} opts;

/* Transactions this driver committed in sagad's database since the first
 * commit counter reading: subtracted from the database's count to leave
 * sagad's own. */
static long long driver_tx;

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Every statement of the driver goes through here to be counted: outside
 * BEGIN a statement is a transaction of its own; inside, COMMIT ends one. */
static PGresult *pg(PGconn *db, const char *sql, int n, const char *const *params)
{
    int idle = PQtransactionStatus(db) == PQTRANS_IDLE;
    PGresult *r = PQexecParams(db, sql, n, NULL, params, NULL, NULL, 0);
    if ((idle && PQtransactionStatus(db) == PQTRANS_IDLE) || strcmp(sql, "COMMIT") == 0)
        driver_tx++;
    return r;
}

/* utime + stime of pid, in seconds; 0 once it is gone. */
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

static double total_cpu(const int *pids, int n)
{
    double total = 0;
    for (int i = 0; i < n; i++)
        total += cpu_seconds(pids[i]);
    return total;
}

/* Committed transactions of database `name` (the driver's own when name
 * is NULL) as PostgreSQL's statistics have them so far. */
static long long commits(PGconn *db, const char *name)
{
    const char *p[1] = {name};
    PGresult *r = pg(db,
                     name ? "SELECT xact_commit FROM pg_stat_database WHERE datname = $1"
                          : "SELECT xact_commit FROM pg_stat_database"
                            " WHERE datname = current_database()",
                     name ? 1 : 0, name ? p : NULL);
    long long n = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1
                      ? atoll(PQgetvalue(r, 0, 0))
                      : -1;
    PQclear(r);
    return n;
}

static double query_num(PGconn *db, const char *sql, const char *param)
{
    const char *p[1] = {param};
    PGresult *r = pg(db, sql, param ? 1 : 0, param ? p : NULL);
    double v = 0;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0 && !PQgetisnull(r, 0, 0))
        v = atof(PQgetvalue(r, 0, 0));
    else if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fprintf(stderr, "saga-bench: %s", PQerrorMessage(db));
    PQclear(r);
    return v;
}

/* A whole decimal number in [lo, hi] for option `name`, or exit 2 saying
 * what was wrong with it. */
static long parse_int(const char *name, const char *text, long lo, long hi)
{
    char *end;
    long v;
    errno = 0;
    v = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "saga-bench: --%s %s: expected a whole number from %ld to %ld\n",
                name, text, lo, hi);
        exit(2);
    }
    return v;
}

/* A comma-separated list of running processes' ids for option `name`. */
static int parse_pids(const char *name, const char *text, int *pids)
{
    char buf[512], *save = NULL, *tok;
    int n = 0;
    if (strlen(text) >= sizeof buf) {
        fprintf(stderr, "saga-bench: --%s: list too long\n", name);
        exit(2);
    }
    snprintf(buf, sizeof buf, "%s", text);
    for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (n == MAX_PIDS) {
            fprintf(stderr, "saga-bench: --%s: more than %d processes\n", name, MAX_PIDS);
            exit(2);
        }
        pids[n] = (int)parse_int(name, tok, 1, 4194304);
        if (kill(pids[n], 0) != 0) {
            fprintf(stderr, "saga-bench: --%s: no process %d\n", name, pids[n]);
            exit(2);
        }
        n++;
    }
    if (n == 0) {
        fprintf(stderr, "saga-bench: --%s: no process id given\n", name);
        exit(2);
    }
    return n;
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
    /* As libsaga's client does: a time-ordered id (saga_shared.h). */
    if (saga__id_new(id, NULL) != SAGA_OK) {
        free(text);
        fprintf(stderr, "saga-bench: no random bytes for a saga id\n");
        return SAGA_EIO;
    }
    {
        const char *p[3] = {id, def->name, text};
        r = pg(db,
               "INSERT INTO saga.start_request (id, name, input)"
               " VALUES ($1, $2, $3::jsonb)",
               3, p);
    }
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        fprintf(stderr, "saga-bench: start: %s", PQerrorMessage(db));
        rc = SAGA_EDB;
    }
    PQclear(r);
    free(text);
    return rc;
}

/* n start requests in one transaction, each intended at t0 + i * step_ms;
 * returns how many were written (all or none). */
static int start_batch(PGconn *db, const saga_definition *def, const opts *o,
                       const char *pad, int n, int64_t t0, double step_ms, unsigned *seed)
{
    int ok = 1;
    PQclear(pg(db, "BEGIN", 0, NULL));
    for (int i = 0; i < n && ok; i++)
        ok = start(db, def, o, pad, t0 + (int64_t)(i * step_ms), seed) == SAGA_OK;
    if (ok)
        PQclear(pg(db, "NOTIFY saga_outbox, 'start'", 0, NULL));
    PQclear(pg(db, ok ? "COMMIT" : "ROLLBACK", 0, NULL));
    return ok ? n : 0;
}

/* A percentile of saga or step latency over the sagas created since
 * `since` (ms since the epoch). */
static double percentile(PGconn *db, int steps, const char *since, const char *q)
{
    const char *params[2] = {since, q};
    const char *sql =
        steps ? "SELECT percentile_cont($2::float8) WITHIN GROUP (ORDER BY"
                " saga.ms(st.finished_at) - saga.ms(st.started_at))"
                " FROM saga.saga_step st JOIN saga.saga s ON s.id = st.saga_id"
                " WHERE s.created_at >= saga.ts($1::bigint)"
                " AND st.status IN ('succeeded', 'failed')"
              : "SELECT percentile_cont($2::float8) WITHIN GROUP (ORDER BY"
                " saga.ms(updated_at) - (input->>'t0')::bigint)"
                " FROM saga.saga WHERE created_at >= saga.ts($1::bigint)"
                " AND status IN ('completed', 'compensated')";
    PGresult *r = pg(db, sql, 2, params);
    double v = PQresultStatus(r) == PGRES_TUPLES_OK && !PQgetisnull(r, 0, 0)
                   ? atof(PQgetvalue(r, 0, 0))
                   : 0;
    PQclear(r);
    return v;
}

/* The per-interval record (--interval): appended to a growing JSON array. */
typedef struct interval_log {
    char *text;
    size_t len, cap;
    double wal0, fpi0, ckpt0;
    long long ended0;
    int64_t t0, last;
} interval_log;

static void log_append(interval_log *l, const char *piece)
{
    size_t n = strlen(piece);
    if (l->len + n + 1 > l->cap) {
        size_t cap = (l->cap ? l->cap * 2 : 4096) + n;
        char *t = realloc(l->text, cap);
        if (t == NULL)
            return;
        l->text = t;
        l->cap = cap;
    }
    memcpy(l->text + l->len, piece, n + 1);
    l->len += n;
}

/* WAL bytes so far, full-page images, checkpoints begun, and the vacuums
 * running now (database.table), in one statement. */
static void interval_sample(PGconn *db, double *wal, double *fpi, double *ckpt, char *vac,
                            size_t vac_size)
{
    PGresult *r =
        pg(db,
           "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn,"
           " (SELECT wal_fpi FROM pg_stat_wal),"
           " (SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter),"
           " (SELECT coalesce(string_agg(v.datname || '.' ||"
           " coalesce(c.relname, v.relid::text), ' '), '')"
           " FROM pg_stat_progress_vacuum v LEFT JOIN pg_class c ON c.oid = v.relid"
           " AND v.datname = current_database())",
           0, NULL);
    *wal = *fpi = *ckpt = 0;
    vac[0] = '\0';
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
        *wal = atof(PQgetvalue(r, 0, 0));
        *fpi = atof(PQgetvalue(r, 0, 1));
        *ckpt = atof(PQgetvalue(r, 0, 2));
        snprintf(vac, vac_size, "%s", PQgetvalue(r, 0, 3));
    }
    PQclear(r);
}

/* One interval's line (stderr) and record, ending at `now` with `ended`
 * sagas ended since the load began. */
static void interval_mark(PGconn *db, interval_log *l, const char *label, int64_t now,
                          long long ended)
{
    double wal, fpi, ckpt, secs = (double)(now - l->last) / 1000.0;
    char vac[512], piece[1024];
    interval_sample(db, &wal, &fpi, &ckpt, vac, sizeof vac);
    fprintf(stderr,
            "saga-bench: %s %4.0f s: %6lld ended, %6.0f sagas/s; WAL %6.1f MB/s,"
            " %5.0f full-page images/s; checkpoints begun %.0f; vacuuming: %s\n",
            label, (double)(now - l->t0) / 1000.0, ended - l->ended0,
            (double)(ended - l->ended0) / secs, (wal - l->wal0) / secs / 1e6,
            (fpi - l->fpi0) / secs, ckpt - l->ckpt0, vac[0] ? vac : "-");
    snprintf(piece, sizeof piece,
             "%s{\"t\": %.1f, \"epoch_ms\": %lld, \"seconds\": %.2f, \"ended\": %lld,"
             " \"sagas_per_s\": %.1f, \"wal_bytes\": %.0f, \"wal_fpi\": %.0f,"
             " \"checkpoints\": %.0f, \"vacuuming\": \"%s\"}",
             l->len > 1 ? ", " : "", (double)(now - l->t0) / 1000.0,
             (long long)(saga_now_ms() - (mono_ms() - now)), secs, ended - l->ended0,
             (double)(ended - l->ended0) / secs, wal - l->wal0, fpi - l->fpi0,
             ckpt - l->ckpt0, vac);
    log_append(l, piece);
    l->wal0 = wal;
    l->fpi0 = fpi;
    l->ckpt0 = ckpt;
    l->ended0 = ended;
    l->last = now;
}

int main(int argc, char **argv)
{
    static const struct option lo[] = {{"steps", 1, 0, 'k'},
                                       {"closed", 1, 0, 'n'},
                                       {"rate", 1, 0, 'r'},
                                       {"duration", 1, 0, 'd'},
                                       {"fail-rate", 1, 0, 'f'},
                                       {"payload", 1, 0, 'p'},
                                       {"sagad-pids", 1, 0, 's'},
                                       {"participant-pids", 1, 0, 'P'},
                                       {"participant-db", 1, 0, 'D'},
                                       {"label", 1, 0, 'l'},
                                       {"json", 1, 0, 'j'},
                                       {"interval", 1, 0, 'i'},
                                       {0, 0, 0, 0}};
    opts o = {.steps = 4, .payload = 64, .label = "run"};
    const saga_definition *def;
    saga_defs *defs;
    char name[64], *pad, *end;
    unsigned seed = (unsigned)getpid();
    int c, total = 0, start_failed = 0;
    int64_t began, load_end, ended, load_end_epoch;
    long long c0, c1, pc0 = 0, pc1 = 0, tx;
    double cpu_d0, cpu_p0, cpu_d1, cpu_p1;
    PGconn *db;
    char since[32], until[32];
    interval_log il = {0};

    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'k':
            o.steps = (int)parse_int("steps", optarg, 1, 100);
            break;
        case 'n':
            o.closed = (int)parse_int("closed", optarg, 1, 1000000);
            break;
        case 'r':
            o.rate = (int)parse_int("rate", optarg, 1, 100000);
            break;
        case 'd':
            o.duration = (int)parse_int("duration", optarg, 1, 3600);
            break;
        case 'f':
            errno = 0;
            o.fail_rate = strtod(optarg, &end);
            if (errno != 0 || end == optarg || *end != '\0' || !(o.fail_rate >= 0) ||
                o.fail_rate > 1) {
                fprintf(stderr,
                        "saga-bench: --fail-rate %s: expected a number from 0 to 1\n",
                        optarg);
                return 2;
            }
            break;
        case 'p':
            o.payload = (int)parse_int("payload", optarg, 0, 100000);
            break;
        case 's':
            o.nsagad = parse_pids("sagad-pids", optarg, o.sagad_pids);
            break;
        case 'P':
            o.nparticipant = parse_pids("participant-pids", optarg, o.participant_pids);
            break;
        case 'D':
            o.participant_db = optarg;
            break;
        case 'l':
            o.label = optarg;
            break;
        case 'j':
            o.json = optarg;
            break;
        case 'i':
            o.interval = (int)parse_int("interval", optarg, 1, 3600);
            break;
        default:
            fprintf(stderr, "saga-bench: see the comment at the top of saga_bench.c\n");
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "saga-bench: unexpected argument %s\n", argv[optind]);
        return 2;
    }
    if ((o.closed > 0) == (o.rate > 0) || (o.rate > 0 && o.duration == 0)) {
        fprintf(stderr, "saga-bench: need either --closed N [--duration S] or"
                        " --rate R --duration S\n");
        return 2;
    }
    if (o.rate > 0 && (long long)o.rate * o.duration > 10000000) {
        fprintf(stderr,
                "saga-bench: --rate %d for --duration %d is more than 10,000,000"
                " sagas\n",
                o.rate, o.duration);
        return 2;
    }
    if (getenv("SAGA_PG_URL") == NULL) {
        fprintf(stderr, "saga-bench: SAGA_PG_URL is not set\n");
        return 2;
    }
    db = PQconnectdb(getenv("SAGA_PG_URL"));
    if (PQstatus(db) != CONNECTION_OK) {
        fprintf(stderr, "saga-bench: %s", PQerrorMessage(db));
        PQfinish(db);
        return 3;
    }
    if (o.participant_db != NULL && commits(db, o.participant_db) < 0) {
        fprintf(stderr, "saga-bench: --participant-db %s: no such database\n",
                o.participant_db);
        PQfinish(db);
        return 2;
    }
    defs = saga_defs_new();
    if ((def = define(db, defs, o.steps, name)) == NULL) {
        saga_defs_free(defs);
        PQfinish(db);
        return 1;
    }
    pad = malloc((size_t)o.payload + 1);
    if (pad == NULL) {
        fprintf(stderr, "saga-bench: out of memory\n");
        return 1;
    }
    memset(pad, 'x', (size_t)o.payload);
    pad[o.payload] = '\0';
    snprintf(since, sizeof since, "%lld", (long long)saga_now_ms());
    PQclear(pg(db, "SELECT pg_stat_force_next_flush()", 0, NULL));
    sleep(1);
    c0 = commits(db, NULL);
    driver_tx = 1; /* the reading's own transaction counts in c1 */
    if (o.participant_db != NULL)
        pc0 = commits(db, o.participant_db);
    cpu_d0 = total_cpu(o.sagad_pids, o.nsagad);
    cpu_p0 = total_cpu(o.participant_pids, o.nparticipant);
    began = mono_ms();
    if (o.closed > 0 && o.duration == 0) {
        /* As fast as it goes: all of them, in batches of 100 per transaction. */
        int64_t now = saga_now_ms();
        for (int i = 0; i < o.closed && !start_failed; i += 100) {
            int k = o.closed - i < 100 ? o.closed - i : 100;
            int got = start_batch(db, def, &o, pad, k, now, 0, &seed);
            total += got;
            start_failed = got == 0;
        }
    } else if (o.closed > 0) {
        /* N in flight for the duration: top up whatever has ended. Every
         * unfinished saga and pending start request is this run's (each
         * run waits for its sagas to end). */
        int64_t deadline = began + (int64_t)o.duration * 1000;
        if (o.interval > 0) {
            char vac[512];
            log_append(&il, "[");
            interval_sample(db, &il.wal0, &il.fpi0, &il.ckpt0, vac, sizeof vac);
            il.t0 = il.last = began;
        }
        while (mono_ms() < deadline && !start_failed) {
            int open =
                (int)query_num(db,
                               "SELECT (SELECT count(*) FROM saga.saga WHERE status IN"
                               " ('running', 'compensating')) + (SELECT count(*) FROM"
                               " saga.start_request WHERE processed_at IS NULL)",
                               NULL);
            int want = o.closed - open;
            int64_t now = mono_ms();
            if (o.interval > 0 && now - il.last >= (int64_t)o.interval * 1000)
                interval_mark(db, &il, o.label, now, (long long)(total - open));
            if (want > 500)
                want = 500;
            if (want > 0) {
                int got = start_batch(db, def, &o, pad, want, saga_now_ms(), 0, &seed);
                total += got;
                start_failed = got == 0;
            }
            /* Counting 50 times a second costs PostgreSQL (and adds to
             * the commits) little, and at 1,000 sagas/s 20 ms lets the
             * sagas in flight drop by 2% at most. */
            if (want < 500)
                sleep_ms(20);
        }
    } else {
        /* Open loop: each saga at its intended time, whatever happens. */
        int64_t t_start = saga_now_ms();
        int n = o.rate * o.duration;
        for (int i = 0; i < n && !start_failed;) {
            int64_t now = saga_now_ms();
            int due = (int)((now - t_start) * o.rate / 1000) + 1;
            if (due > n)
                due = n;
            if (i < due) {
                int got = start_batch(db, def, &o, pad, due - i,
                                      t_start + (int64_t)i * 1000 / o.rate,
                                      1000.0 / o.rate, &seed);
                start_failed = got == 0;
                total += got;
                i += got;
            } else {
                sleep_ms(2);
            }
        }
    }
    load_end = mono_ms();
    load_end_epoch = saga_now_ms();
    if (il.len > 0) {
        /* The last, shorter interval, if it is more than a second. */
        if (load_end - il.last > 1000) {
            int open =
                (int)query_num(db,
                               "SELECT (SELECT count(*) FROM saga.saga WHERE status IN"
                               " ('running', 'compensating')) + (SELECT count(*) FROM"
                               " saga.start_request WHERE processed_at IS NULL)",
                               NULL);
            interval_mark(db, &il, o.label, load_end, (long long)(total - open));
        }
        log_append(&il, "]");
    }
    snprintf(until, sizeof until, "%lld", (long long)load_end_epoch);
    /* Wait for every saga of this run to end (or 10 minutes). */
    for (int waited = 0; waited < 600000; waited += 50) {
        double open =
            query_num(db,
                      "SELECT count(*) FROM saga.saga WHERE status IN ('running',"
                      " 'compensating') AND created_at >= saga.ts($1::bigint)",
                      since) +
            query_num(
                db, "SELECT count(*) FROM saga.start_request WHERE processed_at IS NULL",
                NULL);
        if (open == 0)
            break;
        sleep_ms(50);
    }
    ended = mono_ms();
    /* Backends report their commits to pg_stat_database lazily: a busy one
     * at most every second, one that has gone idle within 10 s
     * (PostgreSQL 15's PGSTAT_IDLE_INTERVAL). The participant goes idle at
     * the end of a run, so wait that long; and flush this one's. */
    sleep(11);
    PQclear(pg(db, "SELECT pg_stat_force_next_flush()", 0, NULL));
    sleep(1);
    tx = driver_tx;
    c1 = commits(db, NULL);
    if (o.participant_db != NULL)
        pc1 = commits(db, o.participant_db);
    cpu_d1 = total_cpu(o.sagad_pids, o.nsagad);
    cpu_p1 = total_cpu(o.participant_pids, o.nparticipant);
    {
        const char *count_since = "SELECT count(*) FROM saga.saga WHERE status = $1"
                                  " AND created_at >= saga.ts($2::bigint)";
        double secs = (double)(ended - began) / 1000.0;
        double completed, compensated, failed, steps_done, ended_in_window, window;
        double steps_in_window;
        const char *p2[2];
        PGresult *r;
        double sp[3], p[3];
        const char *q[3] = {"0.5", "0.99", "0.999"};
        long peak_max = 0, peak_sum = 0, rss_sum = 0;
        double ended_n, sagad_tx, part_tx;
        char *line;
        size_t line_size = 4096 + il.len;
        int left;

        p2[1] = since;
        p2[0] = "completed";
        completed = (r = pg(db, count_since, 2, p2), atof(PQgetvalue(r, 0, 0)));
        PQclear(r);
        p2[0] = "compensated";
        compensated = (r = pg(db, count_since, 2, p2), atof(PQgetvalue(r, 0, 0)));
        PQclear(r);
        p2[0] = "failed";
        failed = (r = pg(db, count_since, 2, p2), atof(PQgetvalue(r, 0, 0)));
        PQclear(r);
        steps_done = query_num(db,
                               "SELECT count(*) FROM saga.saga_step st JOIN saga.saga s"
                               " ON s.id = st.saga_id WHERE s.created_at >="
                               " saga.ts($1::bigint) AND st.attempts > 0",
                               since);
        /* Throughput of a run with a duration is what ended while the load
         * was on, not diluted by the drain at the end. */
        if (o.duration > 0) {
            p2[0] = since;
            p2[1] = until;
            r = pg(db,
                   "SELECT count(*) FROM saga.saga WHERE status IN ('completed',"
                   " 'compensated') AND created_at >= saga.ts($1::bigint)"
                   " AND updated_at <= saga.ts($2::bigint)",
                   2, p2);
            ended_in_window = atof(PQgetvalue(r, 0, 0));
            PQclear(r);
            r = pg(db,
                   "SELECT count(*) FROM saga.saga_step st JOIN saga.saga s"
                   " ON s.id = st.saga_id WHERE s.created_at >= saga.ts($1::bigint)"
                   " AND st.attempts > 0 AND st.finished_at <= saga.ts($2::bigint)",
                   2, p2);
            steps_in_window = atof(PQgetvalue(r, 0, 0));
            PQclear(r);
            window = (double)(load_end - began) / 1000.0;
        } else {
            ended_in_window = completed + compensated;
            steps_in_window = steps_done;
            window = secs;
        }
        for (int i = 0; i < 3; i++) {
            p[i] = percentile(db, 0, since, q[i]);
            sp[i] = percentile(db, 1, since, q[i]);
        }
        for (int i = 0; i < o.nsagad; i++) {
            long hwm = rss_kb(o.sagad_pids[i], "VmHWM:");
            peak_max = hwm > peak_max ? hwm : peak_max;
            peak_sum += hwm;
            rss_sum += rss_kb(o.sagad_pids[i], "VmRSS:");
        }
        ended_n = completed + compensated;
        left = total - (int)ended_n;
        sagad_tx = (double)(c1 - c0 - tx);
        part_tx = o.participant_db != NULL ? (double)(pc1 - pc0) : 0;
        if ((line = malloc(line_size)) == NULL) {
            fprintf(stderr, "saga-bench: out of memory\n");
            return 1;
        }
        snprintf(
            line, line_size,
            "{\"label\": \"%s\", \"mode\": \"%s\", \"steps\": %d, \"fail_rate\": %.2f,"
            " \"payload\": %d, \"rate\": %d, \"in_flight\": %d, \"duration\": %d,"
            " \"sagas\": %d, \"started\": %d, \"ended\": %.0f, \"unfinished\": %d,"
            " \"completed\": %.0f, \"compensated\": %.0f, \"failed\": %.0f,"
            " \"seconds\": %.2f, \"load_seconds\": %.2f, \"sagas_per_s\": %.1f,"
            " \"steps_per_s\": %.1f, \"saga_ms_p50\": %.1f, \"saga_ms_p99\": %.1f,"
            " \"saga_ms_p999\": %.1f, \"step_ms_p50\": %.1f, \"step_ms_p99\": %.1f,"
            " \"step_ms_p999\": %.1f, \"steps_done\": %.0f, \"commits_per_saga\": %.2f,"
            " \"commits_per_step\": %.3f, \"sagad_commits_per_step\": %.3f,"
            " \"participant_commits_per_step\": %.3f, \"driver_commits\": %lld,"
            " \"sagad_instances\": %d, \"sagad_cpu_ms_per_saga\": %.3f,"
            " \"participant_cpu_ms_per_saga\": %.3f, \"sagad_rss_kb\": %ld,"
            " \"sagad_peak_rss_kb\": %ld, \"sagad_peak_rss_kb_sum\": %ld,"
            " \"load_began_epoch_ms\": %lld, \"load_end_epoch_ms\": %lld,"
            " \"intervals\": %s}",
            o.label, o.closed > 0 ? "closed" : "open", o.steps, o.fail_rate, o.payload,
            o.rate, o.closed, o.duration, total, total, ended_n, left, completed,
            compensated, failed, secs, window, ended_in_window / window,
            steps_in_window / window, p[0], p[1], p[2], sp[0], sp[1], sp[2], steps_done,
            ended_n > 0 ? (sagad_tx + part_tx + (double)tx) / ended_n : 0,
            steps_done > 0 ? (sagad_tx + part_tx + (double)tx) / steps_done : 0,
            steps_done > 0 ? sagad_tx / steps_done : 0,
            steps_done > 0 ? part_tx / steps_done : 0, tx, o.nsagad,
            ended_n > 0 ? (cpu_d1 - cpu_d0) * 1000.0 / ended_n : 0,
            ended_n > 0 ? (cpu_p1 - cpu_p0) * 1000.0 / ended_n : 0, rss_sum, peak_max,
            peak_sum, (long long)(load_end_epoch - (load_end - began)),
            (long long)load_end_epoch, il.len > 0 ? il.text : "[]");
        puts(line);
        if (o.json != NULL) {
            FILE *f = fopen(o.json, "a");
            if (f == NULL || fprintf(f, "%s\n", line) < 0 || fclose(f) != 0) {
                fprintf(stderr, "saga-bench: cannot append to %s\n", o.json);
                left = left > 0 ? left : 1;
            }
        }
        if (start_failed)
            fprintf(stderr, "saga-bench: %s: a start request could not be written\n",
                    o.label);
        if (left != 0)
            fprintf(
                stderr,
                "saga-bench: %s: %d saga(s) started, %.0f ended (%.0f failed, the rest"
                " still running)\n",
                o.label, total, ended_n, failed);
        free(line);
        free(il.text);
        free(pad);
        saga_defs_free(defs);
        PQfinish(db);
        return start_failed || left != 0 ? 1 : 0;
    }
}
