-- The barrier table of a participant service (docs/SDK.md, "Exactly once:
-- the barrier"), for its owner to create once, so that the service's own
-- role needs no right to create tables. libsaga creates the same table by
-- itself when it is missing and its role may (tests/integration/test_participant.c
-- checks the two are the same). Run it in the service's schema:
--   PGOPTIONS='-c search_path=payment' psql "$URL" -v ON_ERROR_STOP=1 \
--       -f migrations/participant/barrier.sql
-- then: GRANT SELECT, INSERT, UPDATE ON saga_barrier TO <the service's role>;
-- A table made by an SDK before libsaga 0.5.0 has no "element" column:
-- upgrade it with migrations/participant/barrier_element.sql. The column
-- comes last, where that upgrade adds it, so both tables are the same.
CREATE TABLE IF NOT EXISTS saga_barrier (
    saga_id uuid NOT NULL,
    step int NOT NULL,
    phase text NOT NULL CHECK (phase IN ('invoke','compensate')),
    command_id text NOT NULL,
    outcome text NOT NULL,
    reply jsonb,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    element int NOT NULL DEFAULT 0,
    PRIMARY KEY (saga_id, step, element, phase)
);
