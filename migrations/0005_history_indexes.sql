-- History at scale: with a million finished sagas, sagactl list (newest
-- first, filtered by status or definition), stuck, show, history and stats
-- must read a few index pages, not the table.
--
-- `list --status S` and `list --saga NAME`: newest first within the filter,
-- so the scan stops after --limit rows instead of sorting every match.
CREATE INDEX saga_status_created_idx ON saga.saga (status, created_at DESC);
CREATE INDEX saga_name_created_idx ON saga.saga (name, created_at DESC);
