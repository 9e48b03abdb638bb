/* saga_metrics.c - counters, gauges and histograms in the Prometheus text
 * format 0.0.4, behind one mutex. */
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "saga/error.h"
#include "saga_metrics.h"
#include "saga_shared.h"

const double saga_metrics_latency_buckets[] = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
const size_t saga_metrics_latency_nbuckets =
    sizeof saga_metrics_latency_buckets / sizeof saga_metrics_latency_buckets[0];
const double saga_metrics_commit_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                              0.05,   0.1,   0.25,   0.5,   1,    2.5};
const size_t saga_metrics_commit_nbuckets =
    sizeof saga_metrics_commit_buckets / sizeof saga_metrics_commit_buckets[0];
const double saga_metrics_batch_buckets[] = {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000};
const size_t saga_metrics_batch_nbuckets =
    sizeof saga_metrics_batch_buckets / sizeof saga_metrics_batch_buckets[0];

#define MAX_BUCKETS 64

typedef enum kind { K_COUNTER, K_GAUGE, K_HISTOGRAM } kind;

typedef struct series {
    char *values[SAGA_METRIC_MAX_LABELS];
    double value;     /* counter, gauge */
    uint64_t *counts; /* histogram: per bucket, not cumulative; [nbuckets] is +Inf */
    uint64_t count;
    double sum;
} series;

struct saga_metric {
    saga_metrics *reg;
    kind kind;
    char *name;
    char *help;
    int nlabels;
    char *labels[SAGA_METRIC_MAX_LABELS];
    double *buckets;
    size_t nbuckets;
    series *series;
    int nseries, capseries;
};

struct saga_metrics {
    pthread_mutex_t lock;
    saga_metric **families;
    int n, cap;
};

int saga_metrics_new(saga_metrics **out)
{
    saga_metrics *m;
    if (out == NULL)
        return SAGA_EINVAL;
    *out = NULL;
    m = calloc(1, sizeof *m);
    if (m == NULL)
        return SAGA_ENOMEM;
    if (pthread_mutex_init(&m->lock, NULL) != 0) {
        free(m);
        return SAGA_ENOMEM;
    }
    *out = m;
    return SAGA_OK;
}

static void series_clear(series *s, int nlabels)
{
    for (int i = 0; i < nlabels; i++)
        free(s->values[i]);
    free(s->counts);
}

static void family_free(saga_metric *f)
{
    if (f == NULL)
        return;
    for (int i = 0; i < f->nseries; i++)
        series_clear(&f->series[i], f->nlabels);
    free(f->series);
    for (int i = 0; i < f->nlabels; i++)
        free(f->labels[i]);
    free(f->buckets);
    free(f->name);
    free(f->help);
    free(f);
}

void saga_metrics_free(saga_metrics *m)
{
    if (m == NULL)
        return;
    for (int i = 0; i < m->n; i++)
        family_free(m->families[i]);
    free(m->families);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

static int valid_name(const char *s, int colons)
{
    if (s == NULL || *s == '\0')
        return 0;
    for (const char *c = s; *c; c++) {
        int alpha = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || *c == '_' ||
                    (colons && *c == ':');
        if (!alpha && !(c > s && *c >= '0' && *c <= '9'))
            return 0;
    }
    return 1;
}

/* Find or create the series for values; NULL when it cannot be made.
 * Called with the lock held. */
static series *series_get(saga_metric *f, const char *const *values, int create, int *rc)
{
    series *s;
    *rc = SAGA_OK;
    if (f->nlabels > 0 && values == NULL) {
        *rc = SAGA_EINVAL;
        return NULL;
    }
    for (int i = 0; i < f->nlabels; i++)
        if (values[i] == NULL) {
            *rc = SAGA_EINVAL;
            return NULL;
        }
    for (int i = 0; i < f->nseries; i++) {
        int same = 1;
        for (int k = 0; k < f->nlabels && same; k++)
            same = strcmp(f->series[i].values[k], values[k]) == 0;
        if (same)
            return &f->series[i];
    }
    if (!create)
        return NULL;
    if (f->nseries >= SAGA_METRIC_MAX_SERIES) {
        *rc = SAGA_ENOMEM;
        return NULL;
    }
    if (saga__grow(&f->series, &f->capseries, f->nseries + 1, sizeof *f->series, 8) !=
        SAGA_OK) {
        *rc = SAGA_ENOMEM;
        return NULL;
    }
    s = &f->series[f->nseries];
    memset(s, 0, sizeof *s);
    for (int k = 0; k < f->nlabels; k++)
        if ((s->values[k] = strdup(values[k])) == NULL) {
            series_clear(s, k);
            *rc = SAGA_ENOMEM;
            return NULL;
        }
    if (f->kind == K_HISTOGRAM &&
        (s->counts = calloc(f->nbuckets + 1, sizeof *s->counts)) == NULL) {
        series_clear(s, f->nlabels);
        *rc = SAGA_ENOMEM;
        return NULL;
    }
    f->nseries++;
    return s;
}

static int family_add(saga_metrics *m, kind k, const char *name, const char *help,
                      const char *const *label_names, const double *buckets,
                      size_t nbuckets, saga_metric **out)
{
    saga_metric *f;
    int rc = SAGA_ENOMEM, nl = 0;

    if (out != NULL)
        *out = NULL;
    if (m == NULL || !valid_name(name, 1))
        return SAGA_EINVAL;
    while (label_names != NULL && label_names[nl] != NULL) {
        const char *l = label_names[nl];
        if (nl == SAGA_METRIC_MAX_LABELS || !valid_name(l, 0) ||
            strncmp(l, "__", 2) == 0 || (k == K_HISTOGRAM && strcmp(l, "le") == 0))
            return SAGA_EINVAL;
        for (int j = 0; j < nl; j++)
            if (strcmp(label_names[j], l) == 0)
                return SAGA_EINVAL;
        nl++;
    }
    if (k == K_HISTOGRAM) {
        if (buckets == NULL || nbuckets == 0 || nbuckets > MAX_BUCKETS)
            return SAGA_EINVAL;
        for (size_t i = 0; i < nbuckets; i++)
            if (!isfinite(buckets[i]) || (i > 0 && buckets[i] <= buckets[i - 1]))
                return SAGA_EINVAL;
    }
    if ((f = calloc(1, sizeof *f)) == NULL)
        return SAGA_ENOMEM;
    f->reg = m;
    f->kind = k;
    f->name = strdup(name);
    f->help = strdup(help != NULL ? help : "");
    if (f->name == NULL || f->help == NULL)
        goto out_free;
    for (; f->nlabels < nl; f->nlabels++)
        if ((f->labels[f->nlabels] = strdup(label_names[f->nlabels])) == NULL)
            goto out_free;
    if (k == K_HISTOGRAM) {
        if ((f->buckets = malloc(nbuckets * sizeof *f->buckets)) == NULL)
            goto out_free;
        memcpy(f->buckets, buckets, nbuckets * sizeof *f->buckets);
        f->nbuckets = nbuckets;
    }
    /* Without labels the one series exists from the start, so a scrape
     * shows 0 rather than nothing (absent and zero mean different things
     * to rate() and alerts). */
    if (nl == 0 && series_get(f, NULL, 1, &rc) == NULL)
        goto out_free;

    pthread_mutex_lock(&m->lock);
    for (int i = 0; i < m->n; i++)
        if (strcmp(m->families[i]->name, name) == 0) {
            pthread_mutex_unlock(&m->lock);
            rc = SAGA_EEXIST;
            goto out_free;
        }
    if (saga__grow(&m->families, &m->cap, m->n + 1, sizeof *m->families, 16) != SAGA_OK) {
        pthread_mutex_unlock(&m->lock);
        rc = SAGA_ENOMEM;
        goto out_free;
    }
    m->families[m->n++] = f;
    pthread_mutex_unlock(&m->lock);
    if (out != NULL)
        *out = f;
    return SAGA_OK;
out_free:
    family_free(f);
    return rc;
}

int saga_metrics_counter(saga_metrics *m, const char *name, const char *help,
                         const char *const *label_names, saga_metric **out)
{
    return family_add(m, K_COUNTER, name, help, label_names, NULL, 0, out);
}

int saga_metrics_gauge(saga_metrics *m, const char *name, const char *help,
                       const char *const *label_names, saga_metric **out)
{
    return family_add(m, K_GAUGE, name, help, label_names, NULL, 0, out);
}

int saga_metrics_histogram(saga_metrics *m, const char *name, const char *help,
                           const char *const *label_names, const double *buckets,
                           size_t nbuckets, saga_metric **out)
{
    return family_add(m, K_HISTOGRAM, name, help, label_names, buckets, nbuckets, out);
}

/* op: 0 add, 1 set, 2 observe. */
static int update(saga_metric *f, const char *const *values, double v, int op)
{
    series *s;
    int rc;
    if (f == NULL || isnan(v))
        return SAGA_EINVAL;
    if ((op == 0 && f->kind == K_HISTOGRAM) ||
        (op == 0 && f->kind == K_COUNTER && v < 0) || (op == 1 && f->kind != K_GAUGE) ||
        (op == 2 && f->kind != K_HISTOGRAM))
        return SAGA_EINVAL;
    pthread_mutex_lock(&f->reg->lock);
    s = series_get(f, values, 1, &rc);
    if (s != NULL) {
        if (op == 0) {
            s->value += v;
        } else if (op == 1) {
            s->value = v;
        } else {
            size_t b = 0;
            while (b < f->nbuckets && v > f->buckets[b])
                b++;
            s->counts[b]++;
            s->count++;
            s->sum += v;
        }
    }
    pthread_mutex_unlock(&f->reg->lock);
    return rc;
}

int saga_metric_add(saga_metric *f, const char *const *label_values, double delta)
{
    return update(f, label_values, delta, 0);
}

int saga_metric_set(saga_metric *f, const char *const *label_values, double value)
{
    return update(f, label_values, value, 1);
}

int saga_metric_observe(saga_metric *f, const char *const *label_values, double value)
{
    return update(f, label_values, value, 2);
}

int saga_metric_value(saga_metric *f, const char *const *label_values, double *out)
{
    series *s;
    int rc;
    if (f == NULL || out == NULL)
        return SAGA_EINVAL;
    pthread_mutex_lock(&f->reg->lock);
    s = series_get(f, label_values, 0, &rc);
    *out = s == NULL ? 0 : f->kind == K_HISTOGRAM ? (double)s->count : s->value;
    pthread_mutex_unlock(&f->reg->lock);
    return rc;
}

/* ---- rendering ---- */

typedef struct sink {
    char **buf;
    size_t *cap;
    size_t len;
    int failed;
} sink;

static void put(sink *o, const char *s, size_t n)
{
    if (o->failed)
        return;
    if (o->len + n + 1 > *o->cap) {
        size_t cap = *o->cap ? *o->cap : 4096;
        char *grown;
        while (o->len + n + 1 > cap)
            cap *= 2;
        if ((grown = realloc(*o->buf, cap)) == NULL) {
            o->failed = 1;
            return;
        }
        *o->buf = grown;
        *o->cap = cap;
    }
    memcpy(*o->buf + o->len, s, n);
    o->len += n;
    (*o->buf)[o->len] = '\0';
}

static void puts_(sink *o, const char *s)
{
    put(o, s, strlen(s));
}

/* Label values escape \, " and newline; HELP text escapes \ and newline. */
static void put_escaped(sink *o, const char *s, int quotes)
{
    const char *run = s;
    for (; *s; s++) {
        const char *rep = *s == '\\'            ? "\\\\"
                          : *s == '\n'          ? "\\n"
                          : quotes && *s == '"' ? "\\\""
                                                : NULL;
        if (rep == NULL)
            continue;
        put(o, run, (size_t)(s - run));
        puts_(o, rep);
        run = s + 1;
    }
    put(o, run, (size_t)(s - run));
}

/* A float as Prometheus reads it: the shortest text that reads back as
 * the same double, and +Inf / -Inf / NaN spelled its way. */
static const char *fmt_number(char tmp[40], double v)
{
    if (isnan(v))
        return "NaN";
    if (isinf(v))
        return v > 0 ? "+Inf" : "-Inf";
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(tmp, 40, "%.*g", prec, v);
        if (strtod(tmp, NULL) == v)
            break;
    }
    return tmp;
}

static void put_number(sink *o, double v)
{
    char tmp[40];
    puts_(o, fmt_number(tmp, v));
}

static void put_u64(sink *o, uint64_t v)
{
    char tmp[24];
    snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)v);
    puts_(o, tmp);
}

/* {l1="v1",...} plus le="..." on bucket lines (le NULL otherwise); nothing
 * at all for a label-less series outside buckets. */
static void put_labels(sink *o, const saga_metric *f, const series *s, const char *le)
{
    if (f->nlabels == 0 && le == NULL)
        return;
    puts_(o, "{");
    for (int k = 0; k < f->nlabels; k++) {
        if (k > 0)
            puts_(o, ",");
        puts_(o, f->labels[k]);
        puts_(o, "=\"");
        put_escaped(o, s->values[k], 1);
        puts_(o, "\"");
    }
    if (le != NULL) {
        puts_(o, f->nlabels > 0 ? ",le=\"" : "le=\"");
        puts_(o, le);
        puts_(o, "\"");
    }
    puts_(o, "}");
}

static void render_family(sink *o, const saga_metric *f)
{
    static const char *const types[] = {"counter", "gauge", "histogram"};
    puts_(o, "# HELP ");
    puts_(o, f->name);
    puts_(o, " ");
    put_escaped(o, f->help, 0);
    puts_(o, "\n# TYPE ");
    puts_(o, f->name);
    puts_(o, " ");
    puts_(o, types[f->kind]);
    puts_(o, "\n");
    for (int i = 0; i < f->nseries; i++) {
        const series *s = &f->series[i];
        if (f->kind != K_HISTOGRAM) {
            puts_(o, f->name);
            put_labels(o, f, s, NULL);
            puts_(o, " ");
            put_number(o, s->value);
            puts_(o, "\n");
            continue;
        }
        uint64_t cumulative = 0;
        for (size_t b = 0; b <= f->nbuckets; b++) {
            char tmp[40];
            cumulative += s->counts[b];
            puts_(o, f->name);
            puts_(o, "_bucket");
            put_labels(o, f, s,
                       b < f->nbuckets ? fmt_number(tmp, f->buckets[b]) : "+Inf");
            puts_(o, " ");
            put_u64(o, cumulative);
            puts_(o, "\n");
        }
        puts_(o, f->name);
        puts_(o, "_sum");
        put_labels(o, f, s, NULL);
        puts_(o, " ");
        put_number(o, s->sum);
        puts_(o, "\n");
        puts_(o, f->name);
        puts_(o, "_count");
        put_labels(o, f, s, NULL);
        puts_(o, " ");
        put_u64(o, s->count);
        puts_(o, "\n");
    }
}

int saga_metrics_render(saga_metrics *m, char **buf, size_t *cap, size_t *len)
{
    sink o = {buf, cap, 0, 0};
    if (m == NULL || buf == NULL || cap == NULL || len == NULL)
        return SAGA_EINVAL;
    if (*buf == NULL)
        *cap = 0;
    put(&o, "", 0); /* an empty registry still yields a NUL-terminated "" */
    pthread_mutex_lock(&m->lock);
    for (int i = 0; i < m->n && !o.failed; i++)
        render_family(&o, m->families[i]);
    pthread_mutex_unlock(&m->lock);
    *len = o.len;
    return o.failed ? SAGA_ENOMEM : SAGA_OK;
}

int saga_metrics_register_std(saga_metrics *m, saga_std_metrics *out)
{
    saga_std_metrics std = {0}, *s = &std;
    int rc;
    if (m == NULL || out == NULL)
        return SAGA_EINVAL;
#define LABELS(...) ((const char *[]){__VA_ARGS__, NULL})
    if ((rc = saga_metrics_counter(m, "saga_sagas_started_total", "Sagas started.",
                                   LABELS("definition"), &s->sagas_started)) ||
        (rc = saga_metrics_counter(
             m, "saga_sagas_total",
             "Sagas that reached a final status (completed, compensated, failed).",
             LABELS("definition", "outcome"), &s->sagas_finished)) ||
        (rc = saga_metrics_gauge(m, "saga_sagas",
                                 "Sagas per status in the whole database (finished "
                                 "statuses are recounted less often).",
                                 LABELS("status"), &s->sagas_by_status)) ||
        (rc = saga_metrics_gauge(m, "saga_oldest_unprogressing_seconds",
                                 "Per active status: how long the saga that has gone "
                                 "longest without progress (a status change of the saga "
                                 "or a step) has waited.",
                                 LABELS("status"), &s->oldest_stalled)) ||
        (rc = saga_metrics_counter(m, "saga_steps_dispatched_total",
                                   "Step commands committed for sending (every attempt).",
                                   LABELS("service", "action", "phase"),
                                   &s->steps_dispatched)) ||
        (rc = saga_metrics_counter(m, "saga_steps_retried_total",
                                   "Step commands sent again (attempt 2 and later).",
                                   LABELS("service", "action", "phase"),
                                   &s->steps_retried)) ||
        (rc = saga_metrics_counter(m, "saga_step_timeouts_total",
                                   "Step attempts that timed out without a reply.",
                                   LABELS("service", "action", "phase"),
                                   &s->step_timeouts)) ||
        (rc = saga_metrics_histogram(m, "saga_step_latency_seconds",
                                     "From a step attempt's dispatch to its reply.",
                                     LABELS("service", "action", "phase"),
                                     saga_metrics_latency_buckets,
                                     saga_metrics_latency_nbuckets, &s->step_latency)) ||
        (rc = saga_metrics_counter(m, "saga_replies_total", "Replies applied, by status.",
                                   LABELS("service", "status"), &s->replies)) ||
        (rc = saga_metrics_counter(m, "saga_replies_dropped_total",
                                   "Replies not applied: duplicate (or stale), rejected, "
                                   "unknown saga, malformed, set_aside (dead letter).",
                                   LABELS("reason"), &s->replies_dropped)) ||
        (rc = saga_metrics_counter(m, "saga_commands_sent_total",
                                   "Step commands acknowledged by Kafka.",
                                   LABELS("service"), &s->commands_sent)) ||
        (rc = saga_metrics_counter(m, "saga_kafka_produce_errors_total",
                                   "Commands Kafka refused or did not confirm (resent).",
                                   NULL, &s->produce_errors)) ||
        (rc = saga_metrics_histogram(
             m, "saga_engine_batch_size", "Events applied per engine transaction.", NULL,
             saga_metrics_batch_buckets, saga_metrics_batch_nbuckets, &s->batch_size)) ||
        (rc = saga_metrics_histogram(
             m, "saga_pg_commit_seconds",
             "The engine's write-and-COMMIT round trip to PostgreSQL.", NULL,
             saga_metrics_commit_buckets, saga_metrics_commit_nbuckets, &s->pg_commit)) ||
        (rc = saga_metrics_gauge(m, "saga_outbox_pending",
                                 "Commands in the outbox not yet acknowledged by Kafka.",
                                 NULL, &s->outbox_pending)) ||
        (rc = saga_metrics_gauge(m, "saga_breaker_state",
                                 "Circuit breaker per service: 1 for its current state.",
                                 LABELS("service", "state"), &s->breaker_state)) ||
        (rc = saga_metrics_counter(m, "saga_commands_held_total",
                                   "Commands held back instead of sent, and why (breaker "
                                   "open, bulkhead full): the step waits.",
                                   LABELS("service", "reason"), &s->commands_held)) ||
        (rc = saga_metrics_gauge(m, "saga_commands_in_flight",
                                 "Bulkhead slots taken: commands sent and not yet "
                                 "answered, per service (services with a cap).",
                                 LABELS("service"), &s->in_flight)) ||
        (rc = saga_metrics_counter(m, "saga_engine_loop_ticks_total",
                                   "Iterations of the engine loop.", NULL,
                                   &s->loop_ticks)) ||
        (rc = saga_metrics_counter(m, "saga_dead_letters_total",
                                   "Messages and rows set aside in saga.dead_letter "
                                   "(sagactl dead list), by source: reply, timer, "
                                   "start_request.",
                                   LABELS("source"), &s->dead_letters)) ||
        (rc = saga_metrics_counter(m, "saga_commands_refused_total",
                                   "Step commands the broker refused as too large: each "
                                   "failed its step with message_too_large.",
                                   LABELS("service"), &s->commands_refused)))
        return rc;
#undef LABELS
    *out = std;
    return SAGA_OK;
}
