-- When a saga last made progress: its status or one of its steps' statuses
-- changed. updated_at moves on every applied event (a retry reply, a wake
-- that re-sends, a breaker or bulkhead hold), so a saga that retries or is
-- held for ever never looked idle by it. The gauge
-- saga_oldest_unprogressing_seconds and `sagactl stuck` use this instead.
-- Rows from before take updated_at, the best there is.
ALTER TABLE saga.saga ADD COLUMN progressed_at timestamptz;
UPDATE saga.saga SET progressed_at = updated_at;
ALTER TABLE saga.saga ALTER COLUMN progressed_at SET NOT NULL;
-- sagad and sagactl always set it (to created_at when a saga is created);
-- the default is for rows written by other tools (fixtures, bulk loads).
ALTER TABLE saga.saga ALTER COLUMN progressed_at SET DEFAULT now();
-- Both readers look at active sagas only, per status, by age: the gauge
-- (count and oldest per status, index-only) and `sagactl stuck`
-- (progressed_at older than --idle). Finished sagas stay out of it.
CREATE INDEX saga_active_progressed_idx ON saga.saga (status, progressed_at)
    WHERE status IN ('running', 'compensating', 'failed');
-- Its predecessor served `sagactl stuck` by updated_at; nothing reads it now,
-- and every transition had to update it.
DROP INDEX saga.saga_active_updated_idx;
