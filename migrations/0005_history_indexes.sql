-- History at scale: with a million finished sagas, sagactl list (newest
-- first, filtered by status and/or definition), stuck, show, history and
-- stats must read a few index pages, not the table.
--
-- `list --status S`: newest first within one status, so the scan stops
-- after --limit rows instead of sorting every match.
CREATE INDEX saga_status_created_idx ON saga.saga (status, created_at DESC);
-- `list --saga NAME [--status S]`: sagactl reads this once per status and
-- merges (PostgreSQL 15 has no skip scan), so one index serves the name
-- alone and the name with a status, even when that pair is rare or absent.
-- `stats` counts by (name, status) from it with an index-only scan.
CREATE INDEX saga_name_status_created_idx ON saga.saga (name, status, created_at DESC);
