-- Upgrades a barrier table made before libsaga 0.5.0 (and the Python and
-- Go SDKs of the same time) for fan-out elements (docs/PROTOCOL.md,
-- "Fan-out elements (version 2)"): a column "element" (0 for every row a
-- command of version 1 made) and the primary key (saga_id, step, element,
-- phase), so that each element of a fan-out step has its own rows.
--
-- libsaga and the SDKs run this themselves at start when their role owns
-- the table; where it does not, they refuse to start and name this file.
-- Then the table's owner runs it once, in the service's schema:
--   PGOPTIONS='-c search_path=payment' psql "$OWNER_URL" -v ON_ERROR_STOP=1 \
--       -f migrations/participant/barrier_element.sql
-- It is idempotent (a table already upgraded is left as it is) and runs
-- in one transaction: the column is added without rewriting the table,
-- but the new primary key's index is built under an exclusive lock, so on
-- a large table run it while the service is stopped or quiet. The
-- service's grants (SELECT, INSERT, UPDATE) stay as they were.
DO $$
DECLARE
    pk name;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'saga_barrier'::regclass
               AND attname = 'element' AND NOT attisdropped) THEN
        RETURN;
    END IF;
    LOCK TABLE saga_barrier IN ACCESS EXCLUSIVE MODE;
    -- Another instance may have upgraded it while this one waited.
    IF EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'saga_barrier'::regclass
               AND attname = 'element' AND NOT attisdropped) THEN
        RETURN;
    END IF;
    ALTER TABLE saga_barrier ADD COLUMN element int NOT NULL DEFAULT 0;
    SELECT conname INTO pk FROM pg_constraint
     WHERE conrelid = 'saga_barrier'::regclass AND contype = 'p';
    IF pk IS NOT NULL THEN
        EXECUTE format('ALTER TABLE saga_barrier DROP CONSTRAINT %I', pk);
    END IF;
    ALTER TABLE saga_barrier ADD PRIMARY KEY (saga_id, step, element, phase);
END
$$;
