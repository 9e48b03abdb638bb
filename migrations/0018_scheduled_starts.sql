-- Delayed starts (docs/DEFINITIONS.md, "Starting later"): a start request
-- may name when its saga starts (start_at); until then it is "scheduled"
-- and may be cancelled, which closes it (processed_at) with who and why.
-- sagad takes a request once it is due, oldest due first: the index
-- orders pending requests by when they are due, so scheduled ones far in
-- the future cost the scan nothing.
ALTER TABLE saga.start_request ADD COLUMN start_at timestamptz;
ALTER TABLE saga.start_request ADD COLUMN cancelled_at timestamptz;
ALTER TABLE saga.start_request ADD COLUMN cancelled_by text;
DROP INDEX saga.start_request_pending_idx;
CREATE INDEX start_request_due_idx ON saga.start_request ((coalesce(start_at, requested_at)))
    WHERE processed_at IS NULL;
