-- Signals (docs/DEFINITIONS.md, "Waiting for a signal"): a wait step sends
-- nothing and waits for a named signal, delivered with a payload by
-- sagactl signal, the HTTP API or libsaga's client. A signal is a row
-- here: kept until the saga waits for it (one that came early is consumed
-- when the saga gets there), absorbed when its id was seen before
-- (primary key), and closed (consumed_at, outcome) when sagad delivered it
-- or its saga ended without waiting for it. A waiting step names its
-- signal (waiting_for), so that sagad finds the signals it can deliver by
-- an index, not by reading every definition.
CREATE TABLE saga.saga_signal (
    saga_id     uuid        NOT NULL REFERENCES saga.saga (id) ON DELETE CASCADE,
    name        text        NOT NULL CHECK (name ~ '^[A-Za-z0-9_.-]{1,100}$'),
    signal_id   text        NOT NULL CHECK (length(signal_id) BETWEEN 1 AND 200),
    payload     jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(payload) = 'object'),
    failed      boolean     NOT NULL DEFAULT false,
    reason      text        CHECK (length(reason) <= 1000),
    sent_by     text        NOT NULL DEFAULT session_user,
    received_at timestamptz NOT NULL DEFAULT now(),
    consumed_at timestamptz,
    outcome     text,
    PRIMARY KEY (saga_id, name, signal_id)
);
CREATE INDEX saga_signal_pending_idx ON saga.saga_signal (saga_id, name)
    WHERE consumed_at IS NULL;
ALTER TABLE saga.saga_step ADD COLUMN waiting_for text;
CREATE INDEX saga_step_waiting_idx ON saga.saga_step (saga_id, waiting_for)
    WHERE waiting_for IS NOT NULL;
