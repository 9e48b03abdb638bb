-- Several sagad share one database: an outbox row is held by the instance
-- that sends it (claimed_by) until its lease runs out (claimed_until).
-- The instance that commits a transition holds its commands at once and
-- sends them itself; rows written by sagactl or left by an instance that
-- died are claimed by whichever instance scans first (FOR UPDATE SKIP
-- LOCKED), so no row is sent by two live instances and none is stranded.
ALTER TABLE saga.outbox
    ADD COLUMN claimed_by    text,
    ADD COLUMN claimed_until timestamptz;
