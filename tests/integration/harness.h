/* Integration-test harness: child processes (sagad, participants), log
 * waiting, and PostgreSQL helpers. Needs SAGA_PG_URL, SAGA_KAFKA_BROKERS
 * and SAGA_BUILD_DIR (where bin/ is). */
#ifndef SAGA_IT_HARNESS_H
#define SAGA_IT_HARNESS_H

#include <sys/types.h>

#include <libpq-fe.h>

typedef struct it_proc {
    pid_t pid;
    char name[64];
    char log[512];
} it_proc;

/* The value of an environment variable the test cannot run without; the
 * test fails loudly (never skips) when it is missing. */
const char *it_env(const char *name);

/* A per-run topic prefix ("it<pid>-<name>.") so runs never see each
 * other's messages. */
const char *it_prefix(const char *name);

/* Start bin/<prog> from SAGA_BUILD_DIR with args (NULL-terminated), output
 * to <build>/tests/logs/<name>.log; the child dies with the test process. */
int it_spawn(it_proc *p, const char *name, const char *prog, const char *const *args);

/* Wait until p's log contains needle; 0 when found, -1 on timeout or if
 * the process exited (its log tail is printed). */
int it_wait_log(const it_proc *p, const char *needle, int timeout_ms);

/* SIGTERM, wait up to 15 s, then SIGKILL. Returns the exit status. */
int it_stop(it_proc *p);
void it_kill9(it_proc *p);

/* Give this test program a database of its own (created on the server
 * SAGA_PG_URL names) and point SAGA_PG_URL at it, so test programs never
 * see each other's sagas. Call first. */
void it_isolate_db(const char *name);

PGconn *it_db(void);
/* Run sql (no params) and fail the test on error. */
void it_exec(PGconn *db, const char *sql);
/* Run a script file (e.g. examples/seed.sql). */
void it_exec_file(PGconn *db, const char *path);
/* First column of the first row as a malloc()ed string; NULL if no row. */
char *it_value(PGconn *db, const char *sql, int n, const char *const *params);
long long it_int(PGconn *db, const char *sql, int n, const char *const *params);

/* Run `sagactl ARGS` with the test's database; returns the exit code and
 * the first line of stdout in out (if not NULL). */
int it_sagactl(char *out, size_t size, const char *const *args);

/* Like it_sagactl, but out gets all of stdout (and stderr when with_err). */
int it_sagactl_all(char *out, size_t size, int with_err, const char *const *args);

/* Poll until saga id is completed, compensated or failed; returns its
 * status (static buffer) or "timeout". */
const char *it_wait_final(PGconn *db, const char *id, int timeout_ms);

/* GET path from 127.0.0.1:port over HTTP/1.0; the body into buf
 * (NUL-terminated, cut to size). Returns the HTTP status, or -1 when
 * nothing answered. */
int it_http_get(int port, const char *path, char *buf, size_t size);

/* The HTTP port sagad p picked with --http 127.0.0.1:0, from its log; -1
 * when the log does not say. */
int it_http_port(const it_proc *p);

/* Make a definitions folder for sagad, <build>/tests/<name>-defs-<pid>,
 * holding links to the files globs name (space-separated shell globs,
 * relative to the source tree); its path into out. 0, or -1. */
int it_defs_dir(const char *name, const char *globs, char *out, size_t size);

/* The value of the Prometheus series (name with its labels, exactly as
 * printed) in a /metrics text; -1 when it is not there. */
double it_sample(const char *metrics, const char *series);

/* Create topic (partitions, replication 1) through rk's admin API before
 * anyone creates it another way, with one topic config key=value (key may
 * be NULL); waits up to 30 s. 0, or -1 with the broker's reason printed. */
struct rd_kafka_s;

/* Wait until consumer group is stable with exactly members members that
 * each hold at least one partition of topic (a rebalance is over and the
 * work is shared). 0, or -1 after timeout_ms (the last state printed). */
int it_wait_group(const char *group, const char *topic, int members, int timeout_ms);

int it_create_topic(struct rd_kafka_s *rk, const char *topic, int partitions,
                    const char *key, const char *value);

#endif
