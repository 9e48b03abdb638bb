/* api-load: a load driver for sagad's HTTP API: POST /v1/sagas over
 * HTTP/1.1 keep-alive connections, plain sockets and epoll. Run by
 * scripts/bench (`make bench`).
 *
 *   api-load --port P [--host 127.0.0.1] [--connections N]
 *            (--closed | --rate R) --duration S [--warmup S]
 *            [--definition NAME] [--payload BYTES] [--key-prefix TEXT]
 *            [--token TOKEN] [--timeout S] [--label TEXT] [--json FILE]
 *
 * Every request starts a saga of NAME (default bench_4) with the input
 * {"fail_at": -1, "pad": "x..." (BYTES of it), "src": "api-load"} and an
 * Idempotency-Key of its own (KEY-PREFIX-<n>; the prefix defaults to one
 * made of the process id and the time, so that no two runs share a key).
 *
 * Closed loop (--closed): N connections, each sending its next request as
 * soon as the answer to the last has come: the most the server gives.
 * A request's latency runs from its send to the end of its answer.
 *
 * Open loop (--rate R): requests are due at R per second on a fixed
 * schedule, whatever the answers do; a due request goes out on the first
 * free one of the N connections (waiting in a queue while none is free),
 * and its latency runs from the time it was due, not from its send, so
 * that a slow answer delays no measurement (no coordinated omission).
 *
 * The first --warmup seconds (default 0) are run but not measured; then
 * --duration seconds are. Throughput is the answers that ended within the
 * measured window over its length; latencies are those of the requests
 * due (open) or sent (closed) in it. Every request sent is answered or
 * counted as an error before api-load exits (requests due in the window
 * are all sent, however late).
 *
 * Prints one JSON object on stdout (appended to --json FILE too) and a
 * summary on stderr. Exits 0 when every answer was 2xx, 1 when any was
 * not or a connection failed (the run is reported all the same), 2 on a
 * usage error, 3 when sagad cannot be reached at all. */
#define _GNU_SOURCE /* epoll_pwait2 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS  4096
#define MAX_STATUS 600
#define RBUF_MIN   16384

enum { C_DOWN, C_CONNECTING, C_IDLE, C_BUSY };

typedef struct conn {
    int fd, state;
    char *wbuf;
    size_t wlen, woff;
    char *rbuf;
    size_t rlen, rcap;
    int64_t due_ns;  /* when the request was due (open) or sent (closed) */
    int64_t sent_ns; /* when it went out */
    int measured;    /* due/sent within the measured window */
    int64_t idle_since;
} conn;

typedef struct opts {
    const char *host, *definition, *prefix, *token, *label, *json;
    int port, connections, closed, rate, payload;
    double duration, warmup, timeout;
} opts;

static struct {
    long status[MAX_STATUS];
    long non2xx, ok;
    long err_connect, err_closed, err_timeout, err_parse;
    long idle_closed, sent;
    long window_done; /* answers that ended within the measured window */
    double *lat;      /* ms, of the measured requests */
    size_t nlat, caplat;
    double max_lag_ms; /* open: the most a request went out after it was due */
    long late_1ms;     /* open: measured requests sent more than 1 ms late */
    long max_queue;    /* open: the most requests due and not yet sent */
    char first_error[512];
} st;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void die_usage(const char *fmt, const char *arg)
{
    fprintf(stderr, "api-load: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (see the comment at the top of tests/bench/api_load.c)\n");
    exit(2);
}

static long parse_long(const char *name, const char *text, long lo, long hi)
{
    char *end;
    long v;
    errno = 0;
    v = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "api-load: --%s %s: expected a whole number from %ld to %ld\n",
                name, text, lo, hi);
        exit(2);
    }
    return v;
}

static double parse_secs(const char *name, const char *text, double lo, double hi)
{
    char *end;
    double v;
    errno = 0;
    v = strtod(text, &end);
    if (errno != 0 || end == text || *end != '\0' || !(v >= lo) || v > hi) {
        fprintf(stderr, "api-load: --%s %s: expected seconds from %g to %g\n", name, text,
                lo, hi);
        exit(2);
    }
    return v;
}

static void add_latency(double ms)
{
    if (st.nlat == st.caplat) {
        size_t cap = st.caplat ? st.caplat * 2 : 65536;
        double *p = realloc(st.lat, cap * sizeof *p);
        if (p == NULL) {
            fprintf(stderr, "api-load: out of memory\n");
            exit(1);
        }
        st.lat = p;
        st.caplat = cap;
    }
    st.lat[st.nlat++] = ms;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The nearest-rank percentile of the sorted latencies. */
static double pct(double q)
{
    size_t i;
    if (st.nlat == 0)
        return 0;
    i = (size_t)(q * (double)st.nlat + 0.999999);
    if (i < 1)
        i = 1;
    if (i > st.nlat)
        i = st.nlat;
    return st.lat[i - 1];
}

/* ---- the run ---- */

static opts o;
static conn *conns;
static int ep;
static struct sockaddr_in addr;
static char body[200000];
static size_t body_len;
static uint64_t next_key;
static int64_t win_start, win_end; /* the measured window, ns */
static volatile sig_atomic_t interrupted;

/* The idle connection that has been idle longest, or -1: each request
 * takes it, so that none idles into the server's 10 s timeout. */
static int free_pop(void)
{
    int best = -1;
    for (int i = 0; i < o.connections; i++)
        if (conns[i].state == C_IDLE &&
            (best < 0 || conns[i].idle_since < conns[best].idle_since))
            best = i;
    return best;
}

static int any_idle(void)
{
    for (int i = 0; i < o.connections; i++)
        if (conns[i].state == C_IDLE)
            return 1;
    return 0;
}

static void note_error(const char *fmt, const char *a, const char *b)
{
    if (st.first_error[0] == '\0')
        snprintf(st.first_error, sizeof st.first_error, fmt, a, b);
}

static int open_conn(int i)
{
    conn *c = &conns[i];
    int one = 1;
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.u32 = (uint32_t)i};
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return -1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) != 0 &&
        errno != EINPROGRESS) {
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    c->state = C_CONNECTING;
    c->rlen = 0;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    return 0;
}

static void close_conn(int i)
{
    conn *c = &conns[i];
    if (c->fd >= 0) {
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    c->state = C_DOWN;
    c->rlen = 0;
}

/* The request for key number k into c's write buffer. */
static void build_request(conn *c, uint64_t k)
{
    char head[1024];
    int n = snprintf(head, sizeof head,
                     "POST /v1/sagas HTTP/1.1\r\nHost: %s:%d\r\n"
                     "Content-Type: application/json\r\n"
                     "Idempotency-Key: %s-%llu\r\n%s%s%s"
                     "Content-Length: %zu\r\n\r\n",
                     o.host, o.port, o.prefix, (unsigned long long)k,
                     o.token ? "Authorization: Bearer " : "", o.token ? o.token : "",
                     o.token ? "\r\n" : "", body_len);
    memcpy(c->wbuf, head, (size_t)n);
    memcpy(c->wbuf + n, body, body_len);
    c->wlen = (size_t)n + body_len;
    c->woff = 0;
}

static int flush_write(int i)
{
    conn *c = &conns[i];
    while (c->woff < c->wlen) {
        ssize_t w = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (w <= 0)
            return -1;
        c->woff += (size_t)w;
    }
    return 0;
}

/* Send the request due at due_ns (key number k) on idle connection i. */
static int send_on(int i, uint64_t k, int64_t due_ns)
{
    conn *c = &conns[i];
    int64_t t = now_ns();
    build_request(c, k);
    c->due_ns = due_ns;
    c->sent_ns = t;
    c->measured = due_ns >= win_start && due_ns < win_end;
    c->state = C_BUSY;
    st.sent++;
    if (!o.closed && c->measured) {
        double lag = (double)(t - due_ns) / 1e6;
        if (lag > st.max_lag_ms)
            st.max_lag_ms = lag;
        if (lag > 1.0)
            st.late_1ms++;
    }
    if (flush_write(i) != 0)
        return -1;
    if (c->woff < c->wlen) { /* the rest when the socket takes it */
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP,
                                 .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    }
    return 0;
}

/* A case-insensitive search for header `name` within the head [p, end). */
static const char *find_header(const char *p, const char *end, const char *name)
{
    size_t n = strlen(name);
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (eol == NULL)
            eol = end;
        if ((size_t)(eol - p) > n && strncasecmp(p, name, n) == 0 && p[n] == ':') {
            p += n + 1;
            while (*p == ' ' || *p == '\t')
                p++;
            return p;
        }
        p = eol + 1;
    }
    return NULL;
}

/* How many bytes of the buffer the answer takes: 0 while it is not all
 * there, -1 when it is not HTTP we can read. Its status into *status,
 * whether the server closes after it into *closes, the body's start and
 * length into *b, *blen (not for a chunked body). */
static long parse_answer(const char *buf, size_t len, int *status, int *closes,
                         const char **b, size_t *blen)
{
    const char *hend = NULL, *h, *te;
    size_t head;
    for (size_t i = 0; i + 3 < len; i++)
        if (buf[i] == '\r' && buf[i + 1] == '\n' && buf[i + 2] == '\r' &&
            buf[i + 3] == '\n') {
            hend = buf + i;
            break;
        }
    if (hend == NULL)
        return len > 65536 ? -1 : 0;
    head = (size_t)(hend - buf) + 4;
    if (len < 12 || strncmp(buf, "HTTP/1.", 7) != 0 || buf[8] != ' ')
        return -1;
    *status = atoi(buf + 9);
    if (*status < 100 || *status >= MAX_STATUS)
        return -1;
    h = find_header(buf, hend, "Connection");
    *closes = (h != NULL && strncasecmp(h, "close", 5) == 0) || buf[7] == '0';
    te = find_header(buf, hend, "Transfer-Encoding");
    *b = buf + head;
    *blen = 0;
    if (te != NULL && strncasecmp(te, "chunked", 7) == 0) {
        size_t p = head;
        for (;;) {
            char *e;
            unsigned long sz;
            const char *eol = memchr(buf + p, '\n', len - p);
            if (eol == NULL)
                return 0;
            sz = strtoul(buf + p, &e, 16);
            p = (size_t)(eol - buf) + 1;
            if (sz == 0) {
                /* trailers end with an empty line */
                for (;;) {
                    const char *l = memchr(buf + p, '\n', len - p);
                    if (l == NULL)
                        return 0;
                    if (l == buf + p || (l == buf + p + 1 && buf[p] == '\r'))
                        return (long)((size_t)(l - buf) + 1);
                    p = (size_t)(l - buf) + 1;
                }
            }
            if (p + sz + 2 > len)
                return 0;
            p += sz + 2;
        }
    }
    h = find_header(buf, hend, "Content-Length");
    if (h == NULL)
        return (*status >= 200 && *status != 204 && *status != 304) ? -1 : (long)head;
    *blen = (size_t)strtoul(h, NULL, 10);
    if (len < head + *blen)
        return 0;
    return (long)(head + *blen);
}

/* An answer on connection i: count it, and free the connection. */
static void answered(int i, int status, const char *b, size_t blen)
{
    conn *c = &conns[i];
    int64_t t = now_ns();
    st.status[status]++;
    if (status >= 200 && status < 300) {
        st.ok++;
    } else {
        char code[16], text[300];
        st.non2xx++;
        snprintf(code, sizeof code, "%d", status);
        snprintf(text, sizeof text, "%.*s", (int)(blen < 280 ? blen : 280), b ? b : "");
        note_error("HTTP %s: %s", code, text);
    }
    if (t >= win_start && t < win_end)
        st.window_done++;
    if (c->measured)
        add_latency((double)(t - c->due_ns) / 1e6);
    c->state = C_IDLE;
    c->idle_since = t;
}

/* Read what came on connection i; 1 when an answer completed. */
static int on_readable(int i)
{
    conn *c = &conns[i];
    int done = 0;
    for (;;) {
        ssize_t r;
        if (c->rcap - c->rlen < 4096) {
            size_t cap = c->rcap * 2;
            char *p = realloc(c->rbuf, cap);
            if (p == NULL) {
                fprintf(stderr, "api-load: out of memory\n");
                exit(1);
            }
            c->rbuf = p;
            c->rcap = cap;
        }
        r = recv(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (r <= 0) {
            /* The server closed (or reset) the connection. */
            if (c->state == C_BUSY) {
                st.err_closed++;
                note_error("connection closed with a request unanswered%s%s", "", "");
                /* Not answered: counted as an error, and no latency. */
            } else {
                st.idle_closed++;
            }
            close_conn(i);
            return done;
        }
        c->rlen += (size_t)r;
    }
    while (c->rlen > 0) {
        int status = 0, closes = 0;
        const char *b = NULL;
        size_t blen = 0;
        long n = parse_answer(c->rbuf, c->rlen, &status, &closes, &b, &blen);
        if (n == 0)
            break;
        if (n < 0 || c->state != C_BUSY) {
            st.err_parse++;
            note_error("an answer that is not HTTP/1.1 (or not asked for): %.60s%s",
                       c->rbuf, "");
            close_conn(i);
            return done;
        }
        answered(i, status, b, blen);
        done = 1;
        memmove(c->rbuf, c->rbuf + n, c->rlen - (size_t)n);
        c->rlen -= (size_t)n;
        if (closes) {
            close_conn(i);
            return done;
        }
    }
    return done;
}

/* epoll_wait with a timeout in nanoseconds (epoll_pwait2, Linux 5.11),
 * so that an open loop sends on time, not up to a millisecond late;
 * epoll_wait's milliseconds, rounded up, where it is missing. */
static int wait_events(struct epoll_event *evs, int max, int64_t ns)
{
    static int no_pwait2;
    if (!no_pwait2) {
        struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
        int n = epoll_pwait2(ep, evs, max, &ts, NULL);
        if (n >= 0 || errno != ENOSYS)
            return n;
        no_pwait2 = 1;
    }
    return epoll_wait(ep, evs, max, (int)((ns + 999999) / 1000000));
}

/* Letters, digits and . _ : - only, 1 to max of them: safe in a header
 * and in JSON as they are. */
static int plain(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && strchr("._:-", *s) == NULL)
            return 0;
    return 1;
}

static void on_int(int sig)
{
    (void)sig;
    interrupted = 1;
}

static void usage_checks(void)
{
    if (o.port <= 0)
        die_usage("--port is needed%s", "");
    if (o.closed == (o.rate > 0))
        die_usage("need either --closed or --rate R%s", "");
    if (o.duration <= 0)
        die_usage("--duration S is needed%s", "");
    if (!o.closed && (double)o.rate * (o.duration + o.warmup) > 20e6)
        die_usage("more than 20,000,000 requests%s", "");
}

int main(int argc, char **argv)
{
    static const struct option lo[] = {
        {"host", 1, 0, 'h'},       {"port", 1, 0, 'P'},       {"connections", 1, 0, 'c'},
        {"closed", 0, 0, 'C'},     {"rate", 1, 0, 'r'},       {"duration", 1, 0, 'd'},
        {"warmup", 1, 0, 'w'},     {"definition", 1, 0, 'D'}, {"payload", 1, 0, 'p'},
        {"key-prefix", 1, 0, 'k'}, {"token", 1, 0, 't'},      {"timeout", 1, 0, 'T'},
        {"label", 1, 0, 'l'},      {"json", 1, 0, 'j'},       {0, 0, 0, 0}};
    static char prefix[96], *pad;
    int c, ready = 0, live;
    int64_t t0, load_end, drain_end, period_ns = 0;
    uint64_t scheduled = 0, due_total = 0;
    long long total_due = 0;
    struct epoll_event evs[256];
    struct sigaction sa;

    o = (opts){.host = "127.0.0.1",
               .definition = "bench_4",
               .label = "api",
               .connections = 32,
               .payload = 64,
               .timeout = 30};
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'h':
            o.host = optarg;
            break;
        case 'P':
            o.port = (int)parse_long("port", optarg, 1, 65535);
            break;
        case 'c':
            o.connections = (int)parse_long("connections", optarg, 1, MAX_CONNS);
            break;
        case 'C':
            o.closed = 1;
            break;
        case 'r':
            o.rate = (int)parse_long("rate", optarg, 1, 1000000);
            break;
        case 'd':
            o.duration = parse_secs("duration", optarg, 0.1, 3600);
            break;
        case 'w':
            o.warmup = parse_secs("warmup", optarg, 0, 600);
            break;
        case 'D':
            o.definition = optarg;
            break;
        case 'p':
            o.payload = (int)parse_long("payload", optarg, 0, 100000);
            break;
        case 'k':
            o.prefix = optarg;
            break;
        case 't':
            o.token = optarg;
            break;
        case 'T':
            o.timeout = parse_secs("timeout", optarg, 0.1, 600);
            break;
        case 'l':
            o.label = optarg;
            break;
        case 'j':
            o.json = optarg;
            break;
        default:
            die_usage("unknown option%s", "");
        }
    }
    if (optind < argc)
        die_usage("unexpected argument %s", argv[optind]);
    usage_checks();
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)o.port);
    if (inet_pton(AF_INET, o.host, &addr.sin_addr) != 1)
        die_usage("--host %s: a numeric IPv4 address is needed", o.host);
    if (o.prefix == NULL) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        snprintf(prefix, sizeof prefix, "api-load-%d-%lld", (int)getpid(),
                 (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
        o.prefix = prefix;
    }
    if (!plain(o.prefix, 200) || !plain(o.definition, 200) || !plain(o.label, 100))
        die_usage(
            "--key-prefix, --definition and --label: 1 to 200 of A-Z a-z 0-9 . _ : -"
            " (%s)",
            o.prefix);
    if (o.token != NULL &&
        (strlen(o.token) > 1000 || strpbrk(o.token, " \t\r\n") != NULL))
        die_usage("--token: not a bearer token%s", "");
    if ((pad = malloc((size_t)o.payload + 1)) == NULL)
        return 1;
    memset(pad, 'x', (size_t)o.payload);
    pad[o.payload] = '\0';
    body_len = (size_t)snprintf(body, sizeof body,
                                "{\"definition\": \"%s\", \"input\": {\"fail_at\": -1,"
                                " \"pad\": \"%s\", \"src\": \"api-load\"}}",
                                o.definition, pad);
    free(pad);

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_int;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    conns = calloc((size_t)o.connections, sizeof *conns);
    if ((ep = epoll_create1(EPOLL_CLOEXEC)) < 0 || conns == NULL) {
        perror("api-load");
        return 1;
    }
    for (int i = 0; i < o.connections; i++) {
        conns[i].fd = -1;
        conns[i].wbuf = malloc(body_len + 1024 + 512);
        conns[i].rcap = RBUF_MIN;
        conns[i].rbuf = malloc(RBUF_MIN);
        if (conns[i].wbuf == NULL || conns[i].rbuf == NULL || open_conn(i) != 0) {
            fprintf(stderr, "api-load: cannot open a connection to %s:%d: %s\n", o.host,
                    o.port, strerror(errno));
            return 3;
        }
    }
    /* Wait (up to 5 s) until every connection is up: connecting is not
     * what is measured. */
    {
        int64_t limit = now_ns() + 5000000000LL;
        while (ready < o.connections && now_ns() < limit) {
            int n = epoll_wait(ep, evs, 256, 100);
            for (int k = 0; k < n; k++) {
                int i = (int)evs[k].data.u32, err = 0;
                socklen_t el = sizeof err;
                struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP,
                                         .data.u32 = (uint32_t)i};
                if (conns[i].state != C_CONNECTING)
                    continue;
                getsockopt(conns[i].fd, SOL_SOCKET, SO_ERROR, &err, &el);
                if (err != 0) {
                    fprintf(stderr, "api-load: cannot connect to %s:%d: %s\n", o.host,
                            o.port, strerror(err));
                    return 3;
                }
                epoll_ctl(ep, EPOLL_CTL_MOD, conns[i].fd, &ev);
                conns[i].state = C_IDLE;
                conns[i].idle_since = now_ns();
                ready++;
            }
        }
        if (ready < o.connections) {
            fprintf(stderr, "api-load: %d of %d connections up after 5 s\n", ready,
                    o.connections);
            return 3;
        }
    }

    t0 = now_ns();
    win_start = t0 + (int64_t)(o.warmup * 1e9);
    win_end = win_start + (int64_t)(o.duration * 1e9);
    load_end = win_end;
    if (!o.closed) {
        period_ns = 1000000000LL / o.rate;
        total_due = (long long)((double)o.rate * (o.warmup + o.duration));
    }
    drain_end = 0;
    for (;;) {
        int64_t t = now_ns(), wait_ns;
        int busy = 0, n;
        if (interrupted)
            break;
        /* Requests due now: open loop by the schedule, closed loop one per
         * free connection while the load is on. */
        if (o.closed) {
            if (t < load_end) {
                int i;
                while ((i = free_pop()) >= 0)
                    if (send_on(i, next_key++, t) != 0) {
                        st.err_closed++;
                        note_error("a send failed%s%s", "", "");
                        close_conn(i);
                    }
            }
        } else {
            uint64_t due = t < t0 ? 0 : (uint64_t)((t - t0) / period_ns) + 1;
            long queued;
            if (due > (uint64_t)total_due)
                due = (uint64_t)total_due;
            due_total = due;
            queued = (long)(due_total - scheduled);
            if (queued > st.max_queue)
                st.max_queue = queued;
            while (scheduled < due_total) {
                int i = free_pop();
                if (i < 0)
                    break;
                if (send_on(i, next_key, t0 + (int64_t)scheduled * period_ns) != 0) {
                    st.err_closed++;
                    note_error("a send failed%s%s", "", "");
                    close_conn(i);
                }
                next_key++;
                scheduled++;
            }
        }
        /* Connections the server closed while idle come back; one that
         * failed with a request on it is counted as an error (above). */
        live = 0;
        for (int i = 0; i < o.connections; i++) {
            if (conns[i].state == C_BUSY) {
                busy++;
                if ((double)(t - conns[i].sent_ns) / 1e9 > o.timeout) {
                    st.err_timeout++;
                    note_error("no answer within the timeout%s%s", "", "");
                    close_conn(i);
                }
            }
            if (conns[i].state == C_DOWN && open_conn(i) != 0) {
                st.err_connect++;
                note_error("cannot reconnect%s%s", "", "");
            }
            live += conns[i].state != C_DOWN;
        }
        if (live == 0)
            break;
        /* The end: the load is over and every request sent is answered. */
        if (t >= load_end && busy == 0 && (o.closed || scheduled >= (uint64_t)total_due))
            break;
        if (t >= load_end) {
            if (drain_end == 0)
                drain_end = t + (int64_t)(o.timeout * 1e9) + 1000000000LL;
            else if (t > drain_end)
                break;
        }
        if (o.closed) {
            wait_ns = t < load_end ? load_end - t : 50000000;
        } else if (scheduled < (uint64_t)total_due && any_idle()) {
            int64_t next = t0 + (int64_t)scheduled * period_ns;
            wait_ns = next <= t ? 0 : next - t;
        } else {
            wait_ns = 50000000;
        }
        if (wait_ns > 50000000)
            wait_ns = 50000000;
        n = wait_events(evs, 256, wait_ns);
        for (int k = 0; k < n; k++) {
            int i = (int)evs[k].data.u32;
            conn *cn = &conns[i];
            if (cn->state == C_CONNECTING) {
                int err = 0;
                socklen_t el = sizeof err;
                struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP,
                                         .data.u32 = (uint32_t)i};
                getsockopt(cn->fd, SOL_SOCKET, SO_ERROR, &err, &el);
                if (err != 0) {
                    st.err_connect++;
                    note_error("cannot reconnect: %s%s", strerror(err), "");
                    close_conn(i);
                    continue;
                }
                epoll_ctl(ep, EPOLL_CTL_MOD, cn->fd, &ev);
                cn->state = C_IDLE;
                cn->idle_since = now_ns();
                continue;
            }
            if (cn->state == C_BUSY && cn->woff < cn->wlen &&
                (evs[k].events & EPOLLOUT)) {
                if (flush_write(i) != 0) {
                    st.err_closed++;
                    close_conn(i);
                    continue;
                }
            }
            if (cn->state == C_BUSY && cn->woff < cn->wlen) {
                struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP,
                                         .data.u32 = (uint32_t)i};
                epoll_ctl(ep, EPOLL_CTL_MOD, cn->fd, &ev);
            } else if (cn->fd >= 0 && (evs[k].events & EPOLLOUT)) {
                struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP,
                                         .data.u32 = (uint32_t)i};
                epoll_ctl(ep, EPOLL_CTL_MOD, cn->fd, &ev);
            }
            if (evs[k].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
                on_readable(i);
            }
        }
    }
    if (!o.closed && scheduled < (uint64_t)total_due) {
        /* Due and never sent (interrupted, or no connection left). */
        note_error("requests due and never sent%s%s", "", "");
        st.err_closed += (long)((uint64_t)total_due - scheduled);
    }
    for (int i = 0; i < o.connections; i++)
        if (conns[i].state == C_BUSY) {
            st.err_timeout++;
            note_error("no answer by the end%s%s", "", "");
        }

    qsort(st.lat, st.nlat, sizeof *st.lat, cmp_double);
    {
        double sum = 0, secs = o.duration;
        long errors =
            st.non2xx + st.err_connect + st.err_closed + st.err_timeout + st.err_parse;
        char status[2048], line[4096];
        size_t off = 0;
        struct rusage ru;
        double cpu_ms = 0;
        if (getrusage(RUSAGE_SELF, &ru) == 0)
            cpu_ms = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000.0 +
                     (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000.0;
        for (size_t i = 0; i < st.nlat; i++)
            sum += st.lat[i];
        status[0] = '\0';
        for (int s = 100; s < MAX_STATUS; s++)
            if (st.status[s] > 0)
                off +=
                    (size_t)snprintf(status + off, sizeof status - off, "%s\"%d\": %ld",
                                     off ? ", " : "", s, st.status[s]);
        snprintf(
            line, sizeof line,
            "{\"label\": \"%s\", \"mode\": \"%s\", \"connections\": %d, \"rate\": %d,"
            " \"duration\": %.1f, \"warmup\": %.1f, \"definition\": \"%s\","
            " \"payload\": %d, \"sent\": %ld, \"answered\": %ld, \"ok\": %ld,"
            " \"non_2xx\": %ld, \"status\": {%s}, \"errors\": %ld,"
            " \"err_connect\": %ld, \"err_closed\": %ld, \"err_timeout\": %ld,"
            " \"err_parse\": %ld, \"idle_closed\": %ld, \"measured\": %zu,"
            " \"requests_per_s\": %.1f, \"ms_mean\": %.2f, \"ms_p50\": %.2f,"
            " \"ms_p90\": %.2f, \"ms_p99\": %.2f, \"ms_p999\": %.2f, \"ms_max\": %.2f,"
            " \"max_send_lag_ms\": %.2f, \"late_sends\": %ld, \"max_queue\": %ld,"
            " \"key_prefix\": \"%s\", \"cpu_ms\": %.0f}",
            o.label, o.closed ? "closed" : "open", o.connections, o.rate, o.duration,
            o.warmup, o.definition, o.payload, st.sent, st.ok + st.non2xx, st.ok,
            st.non2xx, status, errors, st.err_connect, st.err_closed, st.err_timeout,
            st.err_parse, st.idle_closed, st.nlat, (double)st.window_done / secs,
            st.nlat ? sum / (double)st.nlat : 0, pct(0.50), pct(0.90), pct(0.99),
            pct(0.999), st.nlat ? st.lat[st.nlat - 1] : 0, st.max_lag_ms, st.late_1ms,
            st.max_queue, o.prefix, cpu_ms);
        puts(line);
        fflush(stdout);
        if (o.json != NULL) {
            FILE *f = fopen(o.json, "a");
            if (f == NULL || fprintf(f, "%s\n", line) < 0 || fclose(f) != 0) {
                fprintf(stderr, "api-load: cannot append to %s\n", o.json);
                errors++;
            }
        }
        fprintf(
            stderr,
            "api-load: %s: %s loop, %d connection(s)%s: %.0f requests/s; %ld sent, %ld"
            " answered 2xx, %ld not 2xx, %ld other error(s) (by status: %s); latency ms"
            " p50 %.2f p90 %.2f p99 %.2f max %.2f\n",
            o.label, o.closed ? "closed" : "open", o.connections,
            o.closed ? "" : " at a fixed rate", (double)st.window_done / secs, st.sent,
            st.ok, st.non2xx, errors - st.non2xx, off ? status : "none", pct(0.50),
            pct(0.90), pct(0.99), st.nlat ? st.lat[st.nlat - 1] : 0);
        if (errors > 0)
            fprintf(stderr, "api-load: %s: FAILED: %ld error(s); the first: %s\n",
                    o.label, errors, st.first_error);
        if (interrupted) {
            fprintf(stderr, "api-load: %s: interrupted\n", o.label);
            return 1;
        }
        return errors > 0 ? 1 : 0;
    }
}
