/* saga_engine_connect.c - the database connection while sagad runs:
 * reconnect with a 250 ms to 5 s back-off when it is lost (logged once per
 * outage), LISTEN and prepare the batch statements again, and read the
 * limits of saga.limits. */
#include "saga_engine_state.h"

/* saga.limits as the database has them now (`sagactl limits set` takes
 * effect here without a restart); on failure the last value stays. */
void saga__engine_read_limits(saga_engine *e)
{
    saga_error err = {0};
    int64_t v;
    if (saga_store_limit(e->db, "max_output_bytes", &v, &err) != SAGA_OK) {
        saga_log(SAGA_LOG_WARN, "%s; max_output_bytes stays %lld", err.message,
                 (long long)e->max_output_bytes);
        return;
    }
    if (v != e->max_output_bytes && e->limits_read)
        saga_log(SAGA_LOG_INFO, "saga.limits max_output_bytes is now %lld (was %lld)",
                 (long long)v, (long long)e->max_output_bytes);
    e->max_output_bytes = v;
    e->limits_read = 1;
}

/* Is the database there? A lost connection is re-made at most once per
 * back-off (250 ms doubling to 5 s), whoever asks and however often, and
 * the outage is logged once when it starts, every 30 s while it lasts and
 * once when it ends: a restart of PostgreSQL costs a few lines, not one
 * per caller per loop. */
int saga__engine_ensure_db(saga_engine *e)
{
    int64_t now;
    if (PQstatus(e->db) == CONNECTION_OK && e->db_ready)
        return 0;
    now = saga__mono_ms();
    if (e->db_lost_ms == 0 && e->db_up_ms != 0 && now - e->db_up_ms < DB_STABLE_MS) {
        /* Lost again right after coming back (a server shutting down
         * still accepts a connection now and then): the same outage, its
         * back-off and its log lines go on. */
        e->db_lost_ms = e->db_outage_ms;
    } else if (e->db_lost_ms == 0) {
        e->db_lost_ms = now;
        e->db_next_try_ms = now;
        e->db_backoff_ms = DB_RETRY_MIN_MS;
        e->db_tries = 0;
        e->db_logged_ms = 0;
    }
    if (now < e->db_next_try_ms)
        return -1;
    e->db_tries++;
    if (PQstatus(e->db) != CONNECTION_OK) {
        e->db_ready = 0;
        PQreset(e->db);
    }
    if (PQstatus(e->db) != CONNECTION_OK) {
        char msg[256];
        /* libpq's message ends in a newline and may run to several lines. */
        snprintf(msg, sizeof msg, "%s", PQerrorMessage(e->db));
        msg[strcspn(msg, "\n")] = '\0';
        now = saga__mono_ms();
        if (e->db_logged_ms == 0 || now - e->db_logged_ms >= DB_LOG_EVERY_MS) {
            if (e->db_logged_ms == 0)
                saga_log(SAGA_LOG_ERROR,
                         "PostgreSQL unreachable: %s; trying again every %d-%d ms", msg,
                         DB_RETRY_MIN_MS, DB_RETRY_MAX_MS);
            else
                saga_log(SAGA_LOG_ERROR,
                         "PostgreSQL still unreachable after %lld s (%d tries): %s",
                         (long long)((now - e->db_lost_ms) / 1000), e->db_tries, msg);
            e->db_logged_ms = now;
        }
        saga_health_set_db(&e->health, 0, msg);
        e->db_next_try_ms = now + e->db_backoff_ms;
        e->db_backoff_ms = e->db_backoff_ms * 2 > DB_RETRY_MAX_MS ? DB_RETRY_MAX_MS
                                                                  : e->db_backoff_ms * 2;
        return -1;
    }
    {
        saga_error err = {0};
        if (saga_store_exec(e->db, "LISTEN saga_outbox", &err) != SAGA_OK ||
            saga_batch_prepare(e->db, &err) != SAGA_OK) {
            /* Connected but not usable yet (e.g. the server is still
             * starting): the same back-off, tried again later. */
            now = saga__mono_ms();
            if (e->db_logged_ms == 0 || now - e->db_logged_ms >= DB_LOG_EVERY_MS) {
                saga_log(SAGA_LOG_ERROR, "PostgreSQL reconnected but not usable: %s",
                         err.message);
                e->db_logged_ms = now;
            }
            e->db_next_try_ms = now + e->db_backoff_ms;
            e->db_backoff_ms = e->db_backoff_ms * 2 > DB_RETRY_MAX_MS
                                   ? DB_RETRY_MAX_MS
                                   : e->db_backoff_ms * 2;
            return -1;
        }
    }
    e->db_ready = 1;
    saga__engine_read_limits(e);
    saga_health_set_db(&e->health, 1, NULL);
    if (e->db_up_ms == 0 || now - e->db_up_ms >= DB_STABLE_MS)
        saga_log(SAGA_LOG_INFO, "reconnected to PostgreSQL after %lld ms (%d tries)",
                 (long long)(saga__mono_ms() - e->db_lost_ms), e->db_tries);
    e->db_outage_ms = e->db_lost_ms;
    e->db_up_ms = saga__mono_ms();
    e->db_lost_ms = 0;
    return 0;
}
