-- scripts/bench-history: a million finished sagas (psql -v finished=N
-- -v active=M), written straight into the orchestrator's tables with
-- generate_series, as if sagad had run them for six months.
--
-- Ages are laid out so a purge has an exact target: the oldest tenth of the
-- finished sagas ended 170 to 180 days ago, the rest within the last 160.
\set ON_ERROR_STOP on
-- The rows are consistent by construction: skip the per-row foreign-key
-- triggers, which would triple the load time.
SET session_replication_role = replica;
SET synchronous_commit = off;

INSERT INTO saga.saga_definition (name, version, body, digest)
SELECT 'flow_' || lpad(d::text, 2, '0'), v,
       jsonb_build_object('name', 'flow_' || lpad(d::text, 2, '0'), 'steps',
           jsonb_build_array(
               jsonb_build_object('name', 'create_order', 'service', 'order', 'action', 'create'),
               jsonb_build_object('name', 'reserve_credit', 'service', 'payment', 'action', 'reserve'),
               jsonb_build_object('name', 'reserve_stock', 'service', 'inventory', 'action', 'reserve'),
               jsonb_build_object('name', 'approve', 'service', 'order', 'action', 'approve'))),
       md5(d::text || '/' || v::text)
FROM generate_series(1, 12) d, generate_series(1, 2) v;

-- Finished sagas: 1 in 50 resolved by an operator, 1 in 7 compensated, the
-- rest completed. Definitions are skewed (flow_01 is the busiest).
CREATE TEMP TABLE gen AS
SELECT g,
       CASE WHEN g % 50 = 0 THEN 'resolved' WHEN g % 7 = 0 THEN 'compensated'
            ELSE 'completed' END AS status,
       CASE WHEN g <= :finished / 10
            THEN now() - interval '170 days' - (g::double precision / (:finished / 10)) * interval '10 days'
            ELSE now() - ((g - :finished / 10)::double precision / (:finished - :finished / 10))
                         * interval '160 days' END AS created_at
FROM generate_series(1, :finished) g;

INSERT INTO saga.saga (id, name, version, status, cursor_step, input, idempotency_key,
                       created_at, updated_at, ended_at)
SELECT gen_random_uuid(),
       'flow_' || lpad((1 + floor(12 * power(((g::bigint * 7919) % 1000) / 1000.0, 2)))::int::text, 2, '0'),
       1 + (g % 3 = 0)::int, status,
       CASE status WHEN 'compensated' THEN 1 + g % 3 ELSE 3 END,
       jsonb_build_object('customer_id', 'c' || (g % 5000), 'sku', 'sku-' || (g % 300),
                          'quantity', 1 + g % 5, 'amount', 100 + g % 9000),
       CASE WHEN g % 2 = 0 THEN 'key-' || g END,
       created_at, created_at + (1 + g % 30) * interval '1 second',
       created_at + (1 + g % 30) * interval '1 second'
FROM gen;

-- Sagas still going or stuck: running and compensating ones that moved in
-- the last few minutes (1 in 50 idle for up to an hour: stuck), and failed
-- ones of every age (purge must leave all of them alone).
INSERT INTO saga.saga (id, name, version, status, cursor_step, input, created_at,
                       updated_at, wake_at)
SELECT gen_random_uuid(), 'flow_' || lpad((1 + g % 12)::text, 2, '0'), 1,
       CASE WHEN g % 5 = 0 THEN 'failed' WHEN g % 5 = 1 THEN 'compensating' ELSE 'running' END,
       g % 4, jsonb_build_object('customer_id', 'c' || g, 'amount', g),
       u - interval '2 seconds', u,
       CASE WHEN g % 5 <> 0 THEN now() + interval '30 seconds' END
FROM generate_series(1, :active) g,
     LATERAL (SELECT CASE WHEN g % 5 = 0 THEN now() - (g % 200) * interval '1 day'
                          WHEN g % 50 = 1 THEN now() - (600 + g % 3000) * interval '1 second'
                          ELSE now() - (g % 240) * interval '1 second' END AS u) t;

ANALYZE saga.saga;

-- Steps and events in saga id order, so their (saga_id, ...) indexes fill
-- page by page instead of at random.
INSERT INTO saga.saga_step (saga_id, idx, name, status, attempts, output, error,
                            started_at, finished_at)
SELECT s.id, i, (ARRAY['create_order', 'reserve_credit', 'reserve_stock', 'approve'])[i + 1],
       CASE WHEN s.status IN ('completed', 'resolved') THEN 'succeeded'
            WHEN s.status = 'compensated' THEN
                CASE WHEN i < s.cursor_step THEN 'compensated'
                     WHEN i = s.cursor_step THEN 'failed' ELSE 'pending' END
            WHEN s.status = 'failed' THEN
                CASE WHEN i < s.cursor_step THEN 'succeeded'
                     WHEN i = s.cursor_step THEN 'compensation_failed' ELSE 'pending' END
            ELSE CASE WHEN i < s.cursor_step THEN 'succeeded'
                      WHEN i = s.cursor_step THEN 'dispatched' ELSE 'pending' END END,
       CASE WHEN i <= s.cursor_step THEN 1 ELSE 0 END,
       CASE WHEN i <= s.cursor_step THEN jsonb_build_object('ref', 'r-' || left(s.id::text, 8)) END,
       CASE WHEN s.status IN ('compensated', 'failed') AND i = s.cursor_step
            THEN '{"code": "declined", "message": "not enough credit"}'::jsonb END,
       CASE WHEN i <= s.cursor_step THEN s.created_at + i * interval '1 second' END,
       CASE WHEN i <= s.cursor_step THEN s.created_at + (i + 0.5) * interval '1 second' END
FROM saga.saga s, generate_series(0, 3) i
ORDER BY s.id, i;

-- Completed: started, dispatched and succeeded per step, completed (10);
-- compensated: 8; resolved: 7; active ones: as far as they got.
INSERT INTO saga.saga_event (saga_id, at, kind, step, phase, attempt, detail, actor)
SELECT s.id, s.created_at + k * interval '200 milliseconds', kinds[k + 1],
       CASE WHEN k BETWEEN 1 AND array_length(kinds, 1) - 2 THEN (k - 1) / 2 END,
       CASE WHEN k BETWEEN 1 AND array_length(kinds, 1) - 2 THEN
           CASE WHEN kinds[k + 1] LIKE 'compensation%' OR kinds[k + 1] = 'step_compensated'
                THEN 'compensate' ELSE 'invoke' END END,
       CASE WHEN k BETWEEN 1 AND array_length(kinds, 1) - 2 THEN 1 END,
       CASE WHEN kinds[k + 1] = 'step_succeeded' THEN jsonb_build_object('ref', 'r-' || k)
            WHEN kinds[k + 1] = 'saga_resolved' THEN '{"reason": "refunded by hand", "by": "ops"}'::jsonb
       END,
       CASE WHEN kinds[k + 1] = 'saga_resolved' THEN 'ops' ELSE 'sagad' END
FROM saga.saga s,
     LATERAL (SELECT CASE s.status
         WHEN 'completed' THEN ARRAY['saga_started', 'step_dispatched', 'step_succeeded',
             'step_dispatched', 'step_succeeded', 'step_dispatched', 'step_succeeded',
             'step_dispatched', 'step_succeeded', 'saga_completed']
         WHEN 'compensated' THEN ARRAY['saga_started', 'step_dispatched', 'step_succeeded',
             'step_dispatched', 'step_failed', 'compensation_dispatched', 'step_compensated',
             'saga_compensated']
         WHEN 'resolved' THEN ARRAY['saga_started', 'step_dispatched', 'step_succeeded',
             'step_dispatched', 'step_failed', 'saga_failed', 'saga_resolved']
         WHEN 'failed' THEN ARRAY['saga_started', 'step_dispatched', 'step_succeeded',
             'step_dispatched', 'step_failed', 'saga_failed']
         ELSE ARRAY['saga_started', 'step_dispatched', 'step_succeeded', 'step_dispatched']
         END AS kinds) kk,
     generate_series(0, array_length(kinds, 1) - 1) k
ORDER BY s.id, k;

SET session_replication_role = origin;
-- What autovacuum would have done by the time a million sagas are history:
-- statistics, and the visibility map that lets index-only scans skip the heap.
VACUUM ANALYZE saga.saga;
VACUUM ANALYZE saga.saga_step;
VACUUM ANALYZE saga.saga_event;
VACUUM ANALYZE saga.saga_definition;
