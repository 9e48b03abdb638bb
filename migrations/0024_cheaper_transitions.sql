-- Cheaper transitions (docs/PERFORMANCE.md, "How the cost is kept down"):
-- fewer index entries per transition.
-- The history had two indexes, (id) and (saga_id, id), and each of a
-- saga's history rows (about ten for four steps) went into both. Nothing
-- reads the history by id alone: every read is one saga's history in
-- order, which (saga_id, id) serves. So (saga_id, id) becomes the primary
-- key and the index on id alone goes: one index entry per row, not two.
-- On a large history this builds one index under a lock that holds
-- sagad's writes back meanwhile (docs/OPERATIONS.md, "Upgrading").
CREATE UNIQUE INDEX saga_event_saga_id_key ON saga.saga_event (saga_id, id);
ALTER TABLE saga.saga_event DROP CONSTRAINT saga_event_pkey;
ALTER TABLE saga.saga_event ADD CONSTRAINT saga_event_pkey
    PRIMARY KEY USING INDEX saga_event_saga_id_key;
DROP INDEX saga.saga_event_saga_idx;

-- A step's row is updated several times while it runs (sent, answered,
-- its timer); room left on each page lets PostgreSQL write the new
-- version beside the old one without touching the indexes (a HOT
-- update). Applies to pages written from now on.
ALTER TABLE saga.saga_step SET (fillfactor = 80);

-- A saga's row is updated at every transition (cursor, timer, times).
-- Any index on a column an update changes makes PostgreSQL write a new
-- entry in every index of the table (ten here), where an update that
-- changes no indexed column can stay on its page (HOT). Three indexes
-- held columns that change at every transition:
--   saga_status_idx (status, updated_at): purge and the "finished in the
--     last minute/hour" counts. They now read ended_at, set once when
--     the saga finishes (with its status, which changes then anyway).
--   saga_active_progressed_idx (status, progressed_at): stuck sagas.
--     They are read through saga_status_created_idx (status, created_at)
--     now: active sagas are few, and progressed_at is filtered on them.
--   saga_wake_idx (wake_at): the timers. Kept, but sagad no longer moves
--     a timer later while the earlier one has not fired (an early wake
--     finds nothing due and sets the exact time), so a transition rarely
--     changes wake_at.
ALTER TABLE saga.saga ADD COLUMN ended_at timestamptz;
UPDATE saga.saga SET ended_at = updated_at
 WHERE status IN ('completed', 'compensated', 'resolved');
CREATE INDEX saga_ended_idx ON saga.saga (status, ended_at) WHERE ended_at IS NOT NULL;
DROP INDEX saga.saga_status_idx;
DROP INDEX saga.saga_active_progressed_idx;
ALTER TABLE saga.saga SET (fillfactor = 85);

-- A step's and a history line's foreign key to their saga cost every
-- inserted row a lookup and a lock of the saga's row (about 6 µs a row,
-- some 14 rows per four-step saga: 7% of PostgreSQL's time per saga in
-- make bench). Both are written only by the one writer (saga_batch.c),
-- in the transaction that writes or locks the saga's row, and removed only
-- by sagactl purge, which deletes them first. The keys go; an element's
-- key to its step and the other tables' keys stay.
DO $$
DECLARE c record;
BEGIN
    FOR c IN SELECT conname, conrelid::regclass AS tbl FROM pg_constraint
              WHERE contype = 'f' AND confrelid = 'saga.saga'::regclass
                AND conrelid IN ('saga.saga_step'::regclass, 'saga.saga_event'::regclass)
    LOOP
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', c.tbl, c.conname);
    END LOOP;
END $$;
