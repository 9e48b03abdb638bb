/* sagactl purge: delete finished sagas by age, in short batches, optionally
 * archiving each one (row, steps, history) as a JSON line first. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "saga_duration.h"
#include "saga_shared.h"
#include "sagactl.h"

/* Only these may be purged: every other status is a saga sagad or an
 * operator still has to act on. */
static const char *const finished[] = {"completed", "compensated", "resolved"};
enum { NFINISHED = 3 };

typedef struct purge_opts {
    int64_t older_ms;
    int statuses[NFINISHED]; /* 1 = purge this finished status */
    int batch;
    const char *archive;
    int dry_run;
} purge_opts;

typedef struct purge_result {
    long long purged;
    long long batches;
    double longest_ms; /* the longest batch transaction, BEGIN to COMMIT */
    int interrupted;
    char cutoff[64];
} purge_result;

static volatile sig_atomic_t stop_requested;

static void on_stop_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static double now_ms(void)
{
    return (double)saga__mono_us() / 1e3;
}

/* Run sql; on failure put the server's message in err and return -1. */
static int run(PGconn *db, const char *sql, int n, const char *const *params,
               ExecStatusType want, PGresult **out, char *err, size_t errsize)
{
    PGresult *r = PQexecParams(db, sql, n, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != want) {
        size_t len;
        snprintf(err, errsize, "%s", PQerrorMessage(db));
        len = strlen(err);
        if (len > 0 && err[len - 1] == '\n')
            err[len - 1] = '\0';
        PQclear(r);
        return -1;
    }
    if (out)
        *out = r;
    else
        PQclear(r);
    return 0;
}

/* ---- the archive file ---- */

/* A line is only needed once its batch committed, and a batch commits only
 * after its lines were fsynced; so bytes after the last newline are a line
 * torn by a crash whose saga is still in the database. Cut them off, so the
 * file stays one JSON document per line. */
static int archive_drop_torn_tail(int fd, char *err, size_t errsize)
{
    struct stat st;
    char buf[4096];
    off_t end;

    if (fstat(fd, &st) != 0)
        goto fail;
    end = st.st_size;
    while (end > 0) {
        off_t from = end > (off_t)sizeof buf ? end - (off_t)sizeof buf : 0;
        ssize_t n = pread(fd, buf, (size_t)(end - from), from);
        if (n != end - from)
            goto fail;
        for (ssize_t i = n - 1; i >= 0; i--)
            if (buf[i] == '\n') {
                off_t keep = from + i + 1;
                if (keep != st.st_size && ftruncate(fd, keep) != 0)
                    goto fail;
                return 0;
            }
        end = from;
    }
    if (st.st_size > 0 && ftruncate(fd, 0) != 0)
        goto fail;
    return 0;
fail:
    snprintf(err, errsize, "%s", strerror(errno));
    return -1;
}

/* Open path for appending (creating it if needed, and making its directory
 * entry durable); -1 with err on failure. */
static int archive_open(const char *path, char *err, size_t errsize)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    char dir[4096];
    char *slash;
    int dfd;

    if (fd < 0) {
        snprintf(err, errsize, "%s", strerror(errno));
        return -1;
    }
    /* pread needs read access: reopen read-write only for the tail check. */
    {
        int rfd = open(path, O_RDWR | O_CLOEXEC);
        if (rfd < 0 || archive_drop_torn_tail(rfd, err, errsize) != 0) {
            if (rfd < 0)
                snprintf(err, errsize, "%s", strerror(errno));
            else
                close(rfd);
            close(fd);
            return -1;
        }
        close(rfd);
    }
    snprintf(dir, sizeof dir, "%s", path);
    slash = strrchr(dir, '/');
    if (slash == NULL)
        snprintf(dir, sizeof dir, ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    dfd = open(dir, O_RDONLY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) != 0) {
        snprintf(err, errsize, "cannot sync its directory: %s", strerror(errno));
        if (dfd >= 0)
            close(dfd);
        close(fd);
        return -1;
    }
    close(dfd);
    return fd;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* ---- the batches ---- */

/* The oldest finished sagas of one status, locked; rows sagad or an operator
 * holds are skipped, never waited for. Oldest first because the index
 * saga_ended_idx (status, ended_at) serves exactly that range. A saga with a signal
 * sagad has not closed yet waits for it (sagad locks the signal, then the
 * saga: taking both the other way round could deadlock). */
static const char pick_sql[] =
    "SELECT id FROM saga.saga s WHERE status = $1 AND ended_at < $2::timestamptz"
    " AND NOT EXISTS (SELECT 1 FROM saga.saga_signal g WHERE g.saga_id = s.id"
    "  AND g.consumed_at IS NULL)"
    " ORDER BY ended_at LIMIT $3::int FOR UPDATE SKIP LOCKED";

/* One JSON line per saga: everything the DELETEs below remove. */
static const char archive_sql[] =
    "SELECT jsonb_build_object('saga', to_jsonb(s),"
    " 'steps', coalesce((SELECT jsonb_agg(to_jsonb(st) ORDER BY st.idx)"
    "  FROM saga.saga_step st WHERE st.saga_id = s.id), '[]'),"
    " 'events', coalesce((SELECT jsonb_agg(to_jsonb(e) ORDER BY e.id)"
    "  FROM saga.saga_event e WHERE e.saga_id = s.id), '[]'),"
    " 'outbox', coalesce((SELECT jsonb_agg(to_jsonb(o) ORDER BY o.id)"
    "  FROM saga.outbox o WHERE o.saga_id = s.id), '[]'),"
    " 'signals', coalesce((SELECT jsonb_agg(to_jsonb(g) ORDER BY g.received_at)"
    "  FROM saga.saga_signal g WHERE g.saga_id = s.id), '[]'),"
    " 'start_request', (SELECT to_jsonb(r) FROM saga.start_request r WHERE r.id = s.id)"
    ")::text FROM saga.saga s WHERE s.id = ANY($1::uuid[]) ORDER BY s.ended_at";

/* Children first and by set, rather than one cascade trigger per saga. The
 * start request goes too: keeping it would keep an id whose saga is gone. */
static const char *const delete_sql[] = {
    "DELETE FROM saga.saga_event WHERE saga_id = ANY($1::uuid[])",
    "DELETE FROM saga.saga_step WHERE saga_id = ANY($1::uuid[])",
    "DELETE FROM saga.outbox WHERE saga_id = ANY($1::uuid[])",
    "DELETE FROM saga.saga_signal WHERE saga_id = ANY($1::uuid[])",
    "DELETE FROM saga.start_request WHERE id = ANY($1::uuid[])",
};

static const char delete_saga_sql[] =
    "DELETE FROM saga.saga WHERE id = ANY($1::uuid[]) AND status = $2";

enum { BATCH_DB = -1, BATCH_IO = -2 };

/* Write the batch's archive lines and fsync them; BATCH_DB or BATCH_IO with
 * err on failure. */
static int archive_batch(PGconn *db, int fd, const char *ids, char *err, size_t errsize)
{
    const char *p[1] = {ids};
    PGresult *r;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int rc = 0;

    if (run(db, archive_sql, 1, p, PGRES_TUPLES_OK, &r, err, errsize) != 0)
        return BATCH_DB;
    for (int i = 0; i < PQntuples(r); i++) {
        size_t n = (size_t)PQgetlength(r, i, 0);
        if (len + n + 1 > cap) {
            char *nb;
            cap = (len + n + 1) * 2;
            nb = realloc(buf, cap);
            if (nb == NULL) {
                snprintf(err, errsize, "out of memory");
                rc = BATCH_IO;
                goto out;
            }
            buf = nb;
        }
        memcpy(buf + len, PQgetvalue(r, i, 0), n);
        len += n;
        buf[len++] = '\n';
    }
    /* One write per batch, then fsync: the DELETE commits only after this. */
    if (write_all(fd, buf, len) != 0 || fsync(fd) != 0) {
        snprintf(err, errsize, "writing the archive: %s", strerror(errno));
        rc = BATCH_IO;
    }
out:
    free(buf);
    PQclear(r);
    return rc;
}

/* One transaction: lock up to opts->batch sagas of status, archive them,
 * delete them. Returns how many were purged, or BATCH_DB / BATCH_IO (rolled
 * back, nothing deleted). */
static long long purge_batch(PGconn *db, const purge_opts *o, const char *status,
                             const char *cutoff, int fd, char *err, size_t errsize)
{
    char limit[16];
    const char *pick[3] = {status, cutoff, limit};
    PGresult *r;
    char *ids = NULL;
    size_t len = 1;
    long long n = 0;
    int failed = BATCH_DB;

    snprintf(limit, sizeof limit, "%d", o->batch);
    if (run(db, "BEGIN", 0, NULL, PGRES_COMMAND_OK, NULL, err, errsize) != 0)
        return BATCH_DB;
    if (run(db, pick_sql, 3, pick, PGRES_TUPLES_OK, &r, err, errsize) != 0)
        goto rollback;
    n = PQntuples(r);
    if (n == 0) {
        PQclear(r);
        if (run(db, "COMMIT", 0, NULL, PGRES_COMMAND_OK, NULL, err, errsize) != 0)
            return BATCH_DB;
        return 0;
    }
    /* The ids as one array literal: {uuid,uuid,...}. */
    ids = malloc((size_t)n * 37 + 2);
    if (ids == NULL) {
        PQclear(r);
        snprintf(err, errsize, "out of memory");
        goto rollback;
    }
    ids[0] = '{';
    for (long long i = 0; i < n; i++) {
        memcpy(ids + len, PQgetvalue(r, (int)i, 0), 36);
        len += 36;
        ids[len++] = i + 1 < n ? ',' : '}';
    }
    ids[len] = '\0';
    PQclear(r);

    if (fd >= 0 && (failed = archive_batch(db, fd, ids, err, errsize)) != 0)
        goto rollback;
    failed = BATCH_DB;
    for (size_t i = 0; i < sizeof delete_sql / sizeof delete_sql[0]; i++) {
        const char *p[1] = {ids};
        if (run(db, delete_sql[i], 1, p, PGRES_COMMAND_OK, NULL, err, errsize) != 0)
            goto rollback;
    }
    {
        const char *p[2] = {ids, status};
        if (run(db, delete_saga_sql, 2, p, PGRES_COMMAND_OK, &r, err, errsize) != 0)
            goto rollback;
        /* The rows are locked, so all must go; anything else is a bug, and
         * then nothing of the batch is deleted. */
        if (atoll(PQcmdTuples(r)) != n) {
            snprintf(err, errsize, "deleted %s of %lld locked sagas; rolled back",
                     PQcmdTuples(r), n);
            PQclear(r);
            goto rollback;
        }
        PQclear(r);
    }
    free(ids);
    if (run(db, "COMMIT", 0, NULL, PGRES_COMMAND_OK, NULL, err, errsize) != 0)
        return BATCH_DB;
    return n;
rollback:
    free(ids);
    {
        PGresult *rb = PQexec(db, "ROLLBACK");
        PQclear(rb);
    }
    return failed;
}

/* Purge everything the options select, batch after batch, until none is
 * left or a stop was requested. Returns an exit code; err says why on
 * failure. */
static int purge(PGconn *db, const purge_opts *o, int fd, purge_result *res, char *err,
                 size_t errsize)
{
    for (int s = 0; s < NFINISHED; s++) {
        if (!o->statuses[s])
            continue;
        for (;;) {
            double t0;
            long long n;
            if (stop_requested) {
                res->interrupted = 1;
                return EXIT_OK;
            }
            t0 = now_ms();
            n = purge_batch(db, o, finished[s], res->cutoff, fd, err, errsize);
            if (n < 0)
                return n == BATCH_IO ? EXIT_REFUSED : EXIT_DB;
            if (n == 0)
                break;
            if (now_ms() - t0 > res->longest_ms)
                res->longest_ms = now_ms() - t0;
            res->purged += n;
            res->batches++;
            /* A short batch means the rest is locked by others or gone. */
            if (n < o->batch)
                break;
        }
    }
    return EXIT_OK;
}

/* ---- the command ---- */

/* A duration as in definitions ("12h", "90m") or with leading days ("30d",
 * "1d12h"): retention is thought of in days, timeouts never are, so only
 * purge takes them. 0 on success. */
static int parse_age(const char *text, int64_t *out_ms)
{
    int64_t days = 0, rest = 0;
    const char *p = text;

    while (*p >= '0' && *p <= '9' && days < 1000000)
        days = days * 10 + (*p++ - '0');
    if (p == text || *p != 'd')
        return saga_duration_parse(text, out_ms);
    if (days >= 1000000 || (p[1] != '\0' && saga_duration_parse(p + 1, &rest) != 0) ||
        rest > INT64_MAX - days * 86400000)
        return -1;
    *out_ms = days * 86400000 + rest;
    return 0;
}

static const char count_sql[] =
    "SELECT coalesce(json_object_agg(status, n), '{}') FROM ("
    " SELECT status, count(*) AS n FROM saga.saga"
    " WHERE status = ANY($1::text[]) AND ended_at < $2::timestamptz"
    " GROUP BY status) c";

static void usage_purge(void)
{
    printf("usage: sagactl purge --older-than DUR [--status S ...] [--batch N]\n"
           "                     [--archive FILE] [--dry-run] [--json]\n"
           "Deletes finished sagas (completed, compensated, resolved; never running,\n"
           "compensating or failed ones) last updated more than DUR ago, with their\n"
           "steps and history, oldest first, in transactions of N sagas (default 1000)\n"
           "that skip sagas locked by others. --status limits it to those statuses.\n"
           "--archive FILE first appends each saga (row, steps, history) as one JSON\n"
           "line to FILE and fsyncs it, before its batch commits. --dry-run only\n"
           "counts. Ctrl-C stops after the current batch.\n");
}

static void print_result(const purge_opts *o, const purge_result *res, double secs)
{
    if (want_json) {
        json_t *j = json_pack(
            "{s:I, s:I, s:f, s:f, s:s, s:b}", "purged", (json_int_t)res->purged,
            "batches", (json_int_t)res->batches, "seconds", secs, "longest_batch_ms",
            res->longest_ms, "cutoff", res->cutoff, "interrupted", res->interrupted);
        if (o->archive)
            json_object_set_new(j, "archive", json_string(o->archive));
        print_json(j);
        json_decref(j);
        return;
    }
    printf("purged %lld saga(s) last updated before %s in %.1f s (%lld batch(es), "
           "longest %.0f ms)%s\n",
           res->purged, res->cutoff, secs, res->batches, res->longest_ms,
           res->interrupted ? "; interrupted, the rest is left" : "");
    if (o->archive)
        printf("archived to %s\n", o->archive);
}

/* A dry run: how many would go, by status. */
static int dry_run(PGconn *db, const purge_opts *o, const char *cutoff)
{
    char statuses[64] = "{";
    const char *p[2] = {statuses, cutoff};
    json_t *counts;
    long long total = 0;

    for (int s = 0; s < NFINISHED; s++)
        if (o->statuses[s]) {
            if (statuses[1] != '\0')
                strcat(statuses, ",");
            strcat(statuses, finished[s]);
        }
    strcat(statuses, "}");
    counts = query_json(db, count_sql, 2, p);
    for (int s = 0; s < NFINISHED; s++)
        total += json_integer_value(json_object_get(counts, finished[s]));
    if (want_json) {
        json_t *j = json_pack("{s:I, s:O, s:s, s:b}", "would_purge", (json_int_t)total,
                              "by_status", counts, "cutoff", cutoff, "dry_run", 1);
        print_json(j);
        json_decref(j);
    } else {
        printf("would purge %lld saga(s) last updated before %s", total, cutoff);
        for (int s = 0, first = 1; s < NFINISHED; s++)
            if (o->statuses[s]) {
                printf(
                    "%s%s %lld", first ? " (" : ", ", finished[s],
                    (long long)json_integer_value(json_object_get(counts, finished[s])));
                first = 0;
            }
        printf(")\n");
    }
    json_decref(counts);
    return EXIT_OK;
}

int cmd_purge(int argc, char **argv)
{
    purge_opts o = {.older_ms = -1, .batch = 1000};
    purge_result res = {0};
    int any_status = 0, fd = -1, rc;
    char msbuf[32], err[1024] = "";
    const char *p[1] = {msbuf};
    struct sigaction sa;
    PGresult *r;
    double t0;
    PGconn *db;

    static const struct option opts[] = {{"older-than", required_argument, NULL, 'o'},
                                         {"status", required_argument, NULL, 's'},
                                         {"batch", required_argument, NULL, 'b'},
                                         {"archive", required_argument, NULL, 'a'},
                                         {"dry-run", no_argument, NULL, 'n'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    for (int c; (c = sagactl_getopt("purge", argc, argv, opts)) != -1;) {
        if (c == 'o') {
            const char *text = optarg;
            int prc = parse_age(text, &o.older_ms);
            check_duration_opt("purge", "--older-than", text, "30d or 12h", prc,
                               o.older_ms);
        } else if (c == 's') {
            int s;
            for (s = 0; s < NFINISHED; s++)
                if (strcmp(optarg, finished[s]) == 0)
                    break;
            if (s == NFINISHED)
                die_usage("purge: --status must be completed, compensated or resolved "
                          "(only finished sagas are purged), not \"%s\"",
                          optarg);
            o.statuses[s] = 1;
            any_status = 1;
        } else if (c == 'b') {
            o.batch = (int)parse_number("purge", "--batch", optarg, 1, 100000);
        } else if (c == 'a') {
            o.archive = optarg;
        } else if (c == 'n') {
            o.dry_run = 1;
        } else if (c == 'j') {
            want_json = 1;
        } else {
            usage_purge();
            return EXIT_OK;
        }
    }
    if (optind < argc)
        die_usage("purge: unexpected argument \"%s\"", argv[optind]);
    if (o.older_ms < 0)
        die_usage("purge: --older-than DUR is required (%s)",
                  "purging every finished saga is never the default");
    if (!any_status)
        for (int s = 0; s < NFINISHED; s++)
            o.statuses[s] = 1;

    db = connect_db(1);
    /* A stable archive format whatever the server's zone; and never queue
     * behind a long lock: failing a batch is better than stalling sagad
     * behind us. */
    if (run(db, "SET TimeZone = 'UTC'", 0, NULL, PGRES_COMMAND_OK, NULL, err,
            sizeof err) != 0 ||
        run(db, "SET lock_timeout = '2s'", 0, NULL, PGRES_COMMAND_OK, NULL, err,
            sizeof err) != 0)
        goto db_error;
    /* One cutoff for the whole run, so it ends even while sagas keep
     * finishing. */
    snprintf(msbuf, sizeof msbuf, "%lld", (long long)o.older_ms);
    if (run(db,
            "SELECT to_char((now() - $1::bigint * interval '1 ms') AT TIME ZONE 'UTC',"
            " 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
            1, p, PGRES_TUPLES_OK, &r, err, sizeof err) != 0)
        goto db_error;
    snprintf(res.cutoff, sizeof res.cutoff, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);

    if (o.dry_run) {
        rc = dry_run(db, &o, res.cutoff);
        PQfinish(db);
        return rc;
    }
    if (o.archive != NULL && (fd = archive_open(o.archive, err, sizeof err)) < 0) {
        fprintf(stderr, "sagactl purge: cannot open the archive %s: %s\n", o.archive,
                err);
        PQfinish(db);
        return EXIT_REFUSED;
    }
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    t0 = now_ms();
    rc = purge(db, &o, fd, &res, err, sizeof err);
    if (fd >= 0)
        close(fd);
    PQfinish(db);
    if (rc != EXIT_OK) {
        fprintf(stderr,
                "sagactl purge: %s\nthat batch was rolled back; %lld saga(s) purged "
                "before it\n",
                err, res.purged);
        return rc;
    }
    print_result(&o, &res, (now_ms() - t0) / 1000.0);
    return EXIT_OK;

db_error:
    fprintf(stderr, "sagactl purge: %s\n", err);
    PQfinish(db);
    return EXIT_DB;
}
