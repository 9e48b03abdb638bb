/* saga_api_wait.c - long polls (GET /v1/sagas/{id}?wait=30s): a waiting
 * request is held by the HTTP server (no thread, no database connection)
 * and listed here by saga id; one thread with one connection LISTENs on
 * channel saga_end (migration 0017: a trigger NOTIFYs when a saga ends)
 * and resumes the requests of the saga named, or those whose time is up.
 * After its connection was lost it resumes every held request, so that
 * none waits for a notification missed meanwhile. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "saga/protocol.h"
#include "saga_api_internal.h"
#include "saga_shared.h"

#define BUCKETS  1024
#define TICK_MS  200  /* deadlines are met within this */
#define RETRY_MS 1000 /* a lost connection is tried again after this */

struct saga__api_waiter {
    char id[SAGA_ID_LEN + 1];
    int64_t deadline; /* monotonic ms */
    void *conn;       /* the held request's */
    int listed;       /* in the table: a wake finds it */
    int held;         /* suspended, not yet resumed */
    int woken;        /* its saga ended, its time is up, or the hub stopped */
    saga__api_waiter *next, *prev;
};

struct saga__api_hub {
    pthread_mutex_t lock;
    pthread_t thread;
    int running, stop, listening;
    pthread_cond_t gone; /* a waiter was freed */
    saga__api_waiter *bucket[BUCKETS];
    int count; /* listed */
    int live;  /* allocated: requests not yet over */
    char *db_url;
};

static unsigned hash(const char *id)
{
    unsigned h = 2166136261u;
    for (; *id; id++)
        h = (h ^ (unsigned char)*id) * 16777619u;
    return h % BUCKETS;
}

/* Under the lock: off the table, and resumed if held. */
static void wake(saga__api_hub *h, saga__api_waiter *w)
{
    if (w->listed) {
        unsigned b = hash(w->id);
        if (w->prev != NULL)
            w->prev->next = w->next;
        else
            h->bucket[b] = w->next;
        if (w->next != NULL)
            w->next->prev = w->prev;
        w->next = w->prev = NULL;
        w->listed = 0;
        h->count--;
    }
    w->woken = 1;
    if (w->held) {
        w->held = 0;
        saga_http_resume(w->conn);
    }
}

/* Under the lock: every waiter whose saga is id (NULL: all), or whose
 * deadline is before now (now 0: none by time). */
static void wake_matching(saga__api_hub *h, const char *id, int64_t now)
{
    for (unsigned b = id ? hash(id) : 0; b < BUCKETS; b++) {
        saga__api_waiter *w = h->bucket[b], *next;
        for (; w != NULL; w = next) {
            next = w->next;
            if ((id != NULL && strcmp(w->id, id) == 0) || (id == NULL && now == 0) ||
                (id == NULL && w->deadline <= now))
                wake(h, w);
        }
        if (id != NULL)
            break;
    }
}

static PGconn *listen_on(const char *url)
{
    PGconn *db = PQconnectdb(url);
    PGresult *r;
    saga__pq_quiet(db);
    if (PQstatus(db) != CONNECTION_OK) {
        PQfinish(db);
        return NULL;
    }
    r = PQexec(db, "LISTEN saga_end");
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        PQclear(r);
        PQfinish(db);
        return NULL;
    }
    PQclear(r);
    return db;
}

static void *hub_main(void *arg)
{
    saga__api_hub *h = arg;
    PGconn *db = NULL;
    int64_t retry_at = 0, next_tick = 0;
    for (;;) {
        int64_t now = saga__mono_ms();
        pthread_mutex_lock(&h->lock);
        if (h->stop) {
            pthread_mutex_unlock(&h->lock);
            break;
        }
        if (now >= next_tick) {
            wake_matching(h, NULL, now);
            next_tick = now + TICK_MS;
        }
        pthread_mutex_unlock(&h->lock);
        if (db == NULL && now >= retry_at) {
            db = listen_on(h->db_url);
            retry_at = now + RETRY_MS;
            pthread_mutex_lock(&h->lock);
            h->listening = db != NULL;
            /* Whatever ended while nobody listened: let each look again. */
            if (db != NULL)
                wake_matching(h, NULL, 0);
            pthread_mutex_unlock(&h->lock);
        }
        if (db == NULL) {
            struct timespec ts = {0, 50 * 1000000L};
            nanosleep(&ts, NULL);
            continue;
        }
        {
            struct pollfd p = {.fd = PQsocket(db), .events = POLLIN};
            if (poll(&p, 1, TICK_MS / 2) < 0 && errno != EINTR)
                p.revents = POLLERR;
            if (p.revents != 0 && PQconsumeInput(db) == 0) {
                PQfinish(db);
                db = NULL;
                pthread_mutex_lock(&h->lock);
                h->listening = 0;
                pthread_mutex_unlock(&h->lock);
                continue;
            }
        }
        for (PGnotify *n; (n = PQnotifies(db)) != NULL; PQfreemem(n)) {
            pthread_mutex_lock(&h->lock);
            if (n->extra != NULL && strlen(n->extra) == SAGA_ID_LEN)
                wake_matching(h, n->extra, 0);
            pthread_mutex_unlock(&h->lock);
        }
    }
    PQfinish(db);
    return NULL;
}

int saga__api_hub_start(saga_api *a)
{
    saga__api_hub *h = calloc(1, sizeof *h);
    if (h == NULL || (h->db_url = strdup(a->db_url)) == NULL ||
        pthread_mutex_init(&h->lock, NULL) != 0 ||
        pthread_cond_init(&h->gone, NULL) != 0) {
        if (h != NULL)
            free(h->db_url);
        free(h);
        return SAGA_ENOMEM;
    }
    if (pthread_create(&h->thread, NULL, hub_main, h) != 0) {
        pthread_cond_destroy(&h->gone);
        pthread_mutex_destroy(&h->lock);
        free(h->db_url);
        free(h);
        return SAGA_ENOMEM;
    }
    h->running = 1;
    a->hub = h;
    return SAGA_OK;
}

void saga__api_hub_stop(saga_api *a)
{
    saga__api_hub *h = a->hub;
    if (h == NULL || !h->running)
        return;
    pthread_mutex_lock(&h->lock);
    h->stop = 1;
    pthread_mutex_unlock(&h->lock);
    pthread_join(h->thread, NULL);
    pthread_mutex_lock(&h->lock);
    h->running = 0;
    h->listening = 0;
    wake_matching(h, NULL, 0);
    /* The server answers what it resumed; it must not stop before (a
     * stopping server drops them unanswered). Bounded: 5 s. */
    {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 5;
        while (h->live > 0 && pthread_cond_timedwait(&h->gone, &h->lock, &until) == 0)
            ;
    }
    pthread_mutex_unlock(&h->lock);
}

void saga__api_hub_free(saga_api *a)
{
    saga__api_hub *h = a->hub;
    if (h == NULL)
        return;
    saga__api_hub_stop(a);
    pthread_cond_destroy(&h->gone);
    pthread_mutex_destroy(&h->lock);
    free(h->db_url);
    free(h);
    a->hub = NULL;
}

saga__api_waiter *saga__api_wait_list(saga_api *a, saga__api_waiter *w, const char *id,
                                      int64_t deadline, const saga_http_request *req)
{
    saga__api_hub *h = a->hub;
    if (h == NULL)
        return NULL;
    pthread_mutex_lock(&h->lock);
    if (!h->listening || h->stop) {
        pthread_mutex_unlock(&h->lock);
        return NULL; /* nothing would wake it: answer at once */
    }
    if (w == NULL && (w = calloc(1, sizeof *w)) != NULL) {
        for (int i = 0; i < SAGA_ID_LEN && id[i]; i++) /* NOTIFY sends lower case */
            w->id[i] = (char)(id[i] >= 'A' && id[i] <= 'F' ? id[i] - 'A' + 'a' : id[i]);
        w->deadline = deadline;
        h->live++;
    }
    if (w != NULL && !w->listed) {
        unsigned b = hash(w->id);
        w->conn = req->conn;
        w->woken = 0;
        w->prev = NULL;
        w->next = h->bucket[b];
        if (w->next != NULL)
            w->next->prev = w;
        h->bucket[b] = w;
        w->listed = 1;
        h->count++;
    }
    pthread_mutex_unlock(&h->lock);
    return w;
}

int saga__api_wait_hold(saga_api *a, saga__api_waiter *w, const saga_http_request *req)
{
    saga__api_hub *h = a->hub;
    int held = 0;
    pthread_mutex_lock(&h->lock);
    /* Under the lock, so that a wake either comes before (woken: answer
     * now) or finds it held (and resumes it). */
    if (!w->woken && w->listed) {
        saga_http_suspend(req);
        w->held = 1;
        held = 1;
    }
    pthread_mutex_unlock(&h->lock);
    return held;
}

int saga__api_wait_over(saga_api *a, const saga__api_waiter *w)
{
    saga__api_hub *h = a->hub;
    int over;
    pthread_mutex_lock(&h->lock);
    over = h->stop || !h->listening || saga__mono_ms() >= w->deadline;
    pthread_mutex_unlock(&h->lock);
    return over;
}

void saga_api_done(void *arg, void *state)
{
    saga_api *a = arg;
    saga__api_waiter *w = state;
    if (a->hub != NULL) {
        pthread_mutex_lock(&a->hub->lock);
        w->held = 0; /* the request is over: nothing to resume */
        if (w->listed)
            wake(a->hub, w);
        a->hub->live--;
        pthread_cond_broadcast(&a->hub->gone);
        pthread_mutex_unlock(&a->hub->lock);
    }
    free(w);
}

int saga__api_waiting(saga_api *a)
{
    int n = 0;
    if (a->hub != NULL) {
        pthread_mutex_lock(&a->hub->lock);
        n = a->hub->count;
        pthread_mutex_unlock(&a->hub->lock);
    }
    return n;
}
