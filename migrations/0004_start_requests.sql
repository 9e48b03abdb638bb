-- Sagas started by services through libsaga's client API: the client
-- records a request (it never needs the definitions); sagad turns it into
-- a saga with the same id, in the same transaction as the saga's first
-- command. Rows are kept so that an idempotency key is never reused.
CREATE TABLE saga.start_request (
    id              uuid        PRIMARY KEY,
    name            text        NOT NULL,
    input           jsonb       NOT NULL,
    idempotency_key text        UNIQUE,
    requested_at    timestamptz NOT NULL DEFAULT now(),
    processed_at    timestamptz,
    error           text
);
CREATE INDEX start_request_pending_idx ON saga.start_request (requested_at)
    WHERE processed_at IS NULL;
