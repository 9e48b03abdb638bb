/* Integration-test harness (see harness.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "harness.h"

static void fatal(const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "integration harness: ");
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, "\n");
    exit(1);
}

const char *it_env(const char *name)
{
    const char *v = getenv(name);
    if (v == NULL || *v == '\0')
        fatal("%s is not set: run through `make check` (scripts/with-services)%s", name,
              "");
    return v;
}

const char *it_prefix(const char *name)
{
    static char buf[128];
    snprintf(buf, sizeof buf, "it%ld-%s.", (long)getpid(), name);
    return buf;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int it_spawn(it_proc *p, const char *name, const char *prog, const char *const *args)
{
    char dir[400], path[512];
    const char *argv[32];
    int n = 0;
    pid_t parent = getpid();

    snprintf(dir, sizeof dir, "%s/tests/logs", it_env("SAGA_BUILD_DIR"));
    mkdir(dir, 0755);
    snprintf(p->name, sizeof p->name, "%s", name);
    snprintf(p->log, sizeof p->log, "%s/%.64s.log", dir, name);
    snprintf(path, sizeof path, "%s/bin/%s", it_env("SAGA_BUILD_DIR"), prog);
    argv[n++] = path;
    for (int i = 0; args != NULL && args[i] != NULL && n < 31; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    /* A fresh log per start: waiting for "ready" must not find an old one. */
    unlink(p->log);
    p->pid = fork();
    if (p->pid < 0)
        return -1;
    if (p->pid == 0) {
        int fd = open(p->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execv(path, (char *const *)argv);
        fprintf(stderr, "exec %s: %s\n", path, strerror(errno));
        _exit(127);
    }
    return 0;
}

static void print_tail(const char *path)
{
    char cmd[700];
    snprintf(cmd, sizeof cmd, "tail -n 30 '%s' >&2", path);
    fprintf(stderr, "---- last lines of %s ----\n", path);
    if (system(cmd) != 0)
        fprintf(stderr, "(no log)\n");
}

int it_wait_log(const it_proc *p, const char *needle, int timeout_ms)
{
    for (int waited = 0; waited < timeout_ms; waited += 100) {
        FILE *f = fopen(p->log, "r");
        char line[4096];
        int status;
        if (f != NULL) {
            while (fgets(line, sizeof line, f) != NULL)
                if (strstr(line, needle) != NULL) {
                    fclose(f);
                    return 0;
                }
            fclose(f);
        }
        if (waitpid(p->pid, &status, WNOHANG) == p->pid) {
            fprintf(stderr, "%s exited before printing \"%s\"\n", p->name, needle);
            print_tail(p->log);
            return -1;
        }
        sleep_ms(100);
    }
    fprintf(stderr, "%s did not print \"%s\" within %d ms\n", p->name, needle,
            timeout_ms);
    print_tail(p->log);
    return -1;
}

int it_stop(it_proc *p)
{
    int status = -1;
    if (p->pid <= 0)
        return -1;
    kill(p->pid, SIGTERM);
    for (int i = 0; i < 150; i++) {
        if (waitpid(p->pid, &status, WNOHANG) == p->pid) {
            p->pid = 0;
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
        sleep_ms(100);
    }
    fprintf(stderr, "%s ignored SIGTERM for 15 s; killing it\n", p->name);
    kill(p->pid, SIGKILL);
    waitpid(p->pid, &status, 0);
    p->pid = 0;
    return -1;
}

void it_kill9(it_proc *p)
{
    int status;
    if (p->pid <= 0)
        return;
    kill(p->pid, SIGKILL);
    waitpid(p->pid, &status, 0);
    p->pid = 0;
}

/* Server NOTICEs ("already exists, skipping") are not for the user. */
static void ignore_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

void it_isolate_db(const char *name)
{
    static char url[1024];
    char sql[256], dbname[128];
    const char *base = it_env("SAGA_PG_URL");
    const char *slash = strrchr(base, '/');
    const char *query = strchr(slash ? slash : base, '?');
    PGconn *db;

    if (slash == NULL || strncmp(base, "postgres", 8) != 0)
        fatal("SAGA_PG_URL must be a postgresql:// URL, not \"%s\"%s", base, "");
    snprintf(dbname, sizeof dbname, "it_%s_%ld", name, (long)getpid());
    db = it_db();
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s", dbname);
    it_exec(db, sql);
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", dbname);
    it_exec(db, sql);
    PQfinish(db);
    snprintf(url, sizeof url, "%.*s/%s%s", (int)(slash - base), base, dbname,
             query ? query : "");
    setenv("SAGA_PG_URL", url, 1);
}

PGconn *it_db(void)
{
    PGconn *db = PQconnectdb(it_env("SAGA_PG_URL"));
    if (PQstatus(db) != CONNECTION_OK)
        fatal("cannot connect to %s: %s", it_env("SAGA_PG_URL"), PQerrorMessage(db));
    PQsetNoticeProcessor(db, ignore_notice, NULL);
    return db;
}

void it_exec(PGconn *db, const char *sql)
{
    PGresult *r = PQexec(db, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        fatal("SQL failed: %s\n%s", PQerrorMessage(db), sql);
    PQclear(r);
}

void it_exec_file(PGconn *db, const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;
    if (f == NULL)
        fatal("cannot open %s: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = calloc(1, (size_t)n + 1);
    if (buf == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n)
        fatal("cannot read %s%s", path, "");
    fclose(f);
    it_exec(db, buf);
    free(buf);
}

char *it_value(PGconn *db, const char *sql, int n, const char *const *params)
{
    PGresult *r = PQexecParams(db, sql, n, NULL, params, NULL, NULL, 0);
    char *v = NULL;
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fatal("SQL failed: %s\n%s", PQerrorMessage(db), sql);
    if (PQntuples(r) > 0 && !PQgetisnull(r, 0, 0))
        v = strdup(PQgetvalue(r, 0, 0));
    PQclear(r);
    return v;
}

long long it_int(PGconn *db, const char *sql, int n, const char *const *params)
{
    char *v = it_value(db, sql, n, params);
    long long x = v ? strtoll(v, NULL, 10) : -1;
    free(v);
    return x;
}

int it_sagactl(char *out, size_t size, const char *const *args)
{
    char cmd[4096];
    size_t len;
    FILE *f;
    int status;

    len = (size_t)snprintf(cmd, sizeof cmd, "'%s/bin/sagactl'", it_env("SAGA_BUILD_DIR"));
    for (int i = 0; args[i] != NULL && len < sizeof cmd; i++)
        len += (size_t)snprintf(cmd + len, sizeof cmd - len, " '%s'", args[i]);
    f = popen(cmd, "r");
    if (f == NULL)
        return -1;
    if (out != NULL) {
        out[0] = '\0';
        if (fgets(out, (int)size, f) != NULL)
            out[strcspn(out, "\n")] = '\0';
    }
    {
        char sink[4096];
        while (fgets(sink, sizeof sink, f) != NULL)
            ;
    }
    status = pclose(f);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int it_sagactl_all(char *out, size_t size, int with_err, const char *const *args)
{
    char cmd[4096];
    size_t len, got = 0;
    FILE *f;
    int status;

    len = (size_t)snprintf(cmd, sizeof cmd, "'%s/bin/sagactl'", it_env("SAGA_BUILD_DIR"));
    for (int i = 0; args[i] != NULL && len < sizeof cmd; i++)
        len += (size_t)snprintf(cmd + len, sizeof cmd - len, " '%s'", args[i]);
    if (with_err && len < sizeof cmd)
        snprintf(cmd + len, sizeof cmd - len, " 2>&1");
    f = popen(cmd, "r");
    if (f == NULL)
        return -1;
    while (got + 1 < size) {
        size_t n = fread(out + got, 1, size - 1 - got, f);
        if (n == 0)
            break;
        got += n;
    }
    out[got] = '\0';
    {
        char sink[4096];
        while (fread(sink, 1, sizeof sink, f) > 0)
            ;
    }
    status = pclose(f);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

const char *it_wait_final(PGconn *db, const char *id, int timeout_ms)
{
    static char status[32];
    const char *p[1] = {id};
    for (int waited = 0; waited < timeout_ms; waited += 100) {
        char *s = it_value(db, "SELECT status FROM saga.saga WHERE id = $1", 1, p);
        if (s != NULL && (strcmp(s, "completed") == 0 || strcmp(s, "compensated") == 0 ||
                          strcmp(s, "failed") == 0)) {
            snprintf(status, sizeof status, "%s", s);
            free(s);
            return status;
        }
        free(s);
        sleep_ms(100);
    }
    return "timeout";
}

int it_http_get(int port, const char *path, char *buf, size_t size)
{
    struct sockaddr_in a = {0};
    int fd = socket(AF_INET, SOCK_STREAM, 0), status = -1;
    size_t len = 0;
    ssize_t n;
    char req[256], *body;
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
    if (write(fd, req, strlen(req)) < 0) {
        close(fd);
        return -1;
    }
    while (len + 1 < size && (n = read(fd, buf + len, size - len - 1)) > 0)
        len += (size_t)n;
    close(fd);
    buf[len] = '\0';
    sscanf(buf, "HTTP/1.%*d %d", &status);
    if ((body = strstr(buf, "\r\n\r\n")) != NULL)
        memmove(buf, body + 4, strlen(body + 4) + 1);
    return status;
}

double it_sample(const char *metrics, const char *series)
{
    const char *p = metrics;
    size_t n = strlen(series);
    while ((p = strstr(p, series)) != NULL) {
        if ((p == metrics || p[-1] == '\n') && p[n] == ' ')
            return strtod(p + n + 1, NULL);
        p += n;
    }
    return -1;
}

int it_create_topic(rd_kafka_t *rk, const char *topic, int partitions, const char *key,
                    const char *value)
{
    rd_kafka_NewTopic_t *nt;
    rd_kafka_queue_t *q;
    rd_kafka_event_t *ev;
    const rd_kafka_topic_result_t **tr;
    char errstr[256];
    size_t n;
    int rc = 0;
    nt = rd_kafka_NewTopic_new(topic, partitions, 1, errstr, sizeof errstr);
    if (nt == NULL) {
        fprintf(stderr, "creating %s: %s\n", topic, errstr);
        return -1;
    }
    if (key != NULL)
        rd_kafka_NewTopic_set_config(nt, key, value);
    q = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
    ev = rd_kafka_queue_poll(q, 30000);
    if (ev == NULL) {
        fprintf(stderr, "creating %s: no answer in 30 s\n", topic);
        rc = -1;
    } else {
        tr = rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev),
                                                 &n);
        for (size_t i = 0; i < n; i++)
            if (rd_kafka_topic_result_error(tr[i]) != RD_KAFKA_RESP_ERR_NO_ERROR) {
                fprintf(stderr, "creating %s: %s\n", rd_kafka_topic_result_name(tr[i]),
                        rd_kafka_topic_result_error_string(tr[i]));
                rc = -1;
            }
        rd_kafka_event_destroy(ev);
    }
    rd_kafka_NewTopic_destroy(nt);
    rd_kafka_queue_destroy(q);
    return rc;
}

/* Members of group holding partitions of topic, if the group is stable;
 * -1 otherwise (or when it cannot be described). */
static int group_holders(rd_kafka_t *rk, const char *group, const char *topic)
{
    const char *groups[1] = {group};
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_event_t *ev;
    int holders = -1;
    rd_kafka_DescribeConsumerGroups(rk, groups, 1, NULL, q);
    ev = rd_kafka_queue_poll(q, 10000);
    if (ev != NULL && rd_kafka_event_error(ev) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        size_t n = 0;
        const rd_kafka_ConsumerGroupDescription_t **g =
            rd_kafka_DescribeConsumerGroups_result_groups(
                rd_kafka_event_DescribeConsumerGroups_result(ev), &n);
        if (n == 1 && rd_kafka_ConsumerGroupDescription_error(g[0]) == NULL &&
            rd_kafka_ConsumerGroupDescription_state(g[0]) ==
                RD_KAFKA_CONSUMER_GROUP_STATE_STABLE) {
            size_t members = rd_kafka_ConsumerGroupDescription_member_count(g[0]);
            holders = 0;
            for (size_t i = 0; i < members; i++) {
                const rd_kafka_topic_partition_list_t *l =
                    rd_kafka_MemberAssignment_partitions(
                        rd_kafka_MemberDescription_assignment(
                            rd_kafka_ConsumerGroupDescription_member(g[0], i)));
                int has = 0;
                for (int k = 0; l != NULL && k < l->cnt && !has; k++)
                    has = strcmp(l->elems[k].topic, topic) == 0;
                holders += has;
            }
        }
    }
    if (ev != NULL)
        rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    return holders;
}

int it_wait_group(const char *group, const char *topic, int members, int timeout_ms)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char errstr[256];
    rd_kafka_t *rk;
    struct timespec t0, now, pause = {0, 200 * 1000000L};
    int holders = -1;
    rd_kafka_conf_set(conf, "bootstrap.servers", it_env("SAGA_KAFKA_BROKERS"), errstr,
                      sizeof errstr);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (rk == NULL) {
        fprintf(stderr, "it_wait_group: %s\n", errstr);
        return -1;
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        holders = group_holders(rk, group, topic);
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (holders == members ||
            (now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000 >=
                timeout_ms)
            break;
        nanosleep(&pause, NULL);
    }
    rd_kafka_destroy(rk);
    if (holders != members) {
        fprintf(stderr,
                "it_wait_group: group %s has %d member(s) holding %s (want %d) after %d "
                "ms\n",
                group, holders, topic, members, timeout_ms);
        return -1;
    }
    return 0;
}

int it_http_port(const it_proc *p)
{
    static const char needle[] = "/readyz on 127.0.0.1:";
    char line[1024];
    int port = -1;
    FILE *f = fopen(p->log, "r");
    while (f != NULL && fgets(line, sizeof line, f) != NULL) {
        char *at = strstr(line, needle);
        if (at != NULL)
            port = atoi(at + strlen(needle));
    }
    if (f != NULL)
        fclose(f);
    return port;
}

int it_defs_dir(const char *name, const char *globs, char *out, size_t size)
{
    char cmd[4096], cwd[512], links[2048] = "";
    const char *g = globs;
    if (getcwd(cwd, sizeof cwd) == NULL)
        return -1;
    snprintf(out, size, "%s/tests/%s-defs-%ld", it_env("SAGA_BUILD_DIR"), name,
             (long)getpid());
    while (*g != '\0') { /* each glob as '<cwd>'/glob */
        size_t n = strcspn(g, " ");
        size_t used = strlen(links);
        snprintf(links + used, sizeof links - used, "'%s'/%.*s ", cwd, (int)n, g);
        g += n;
        g += strspn(g, " ");
    }
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s' && ln -s %s'%s'/", out, out,
             links, out);
    return system(cmd) == 0 ? 0 : -1;
}
