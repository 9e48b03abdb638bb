-- The orchestrator's schema: definitions, sagas, their steps, their
-- history, and the outbox of commands committed but not yet confirmed sent.
CREATE SCHEMA IF NOT EXISTS saga;

CREATE TABLE saga.saga_definition (
    name        text        NOT NULL,
    version     int         NOT NULL CHECK (version >= 1),
    body        jsonb       NOT NULL,
    digest      text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, version),
    UNIQUE (name, digest)
);

CREATE TABLE saga.saga (
    id              uuid        PRIMARY KEY,
    name            text        NOT NULL,
    version         int         NOT NULL,
    status          text        NOT NULL CHECK (status IN
                        ('running', 'compensating', 'completed', 'compensated', 'failed')),
    cursor_step     int         NOT NULL,
    input           jsonb       NOT NULL,
    idempotency_key text        UNIQUE,
    deadline_at     timestamptz,
    wake_at         timestamptz,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    FOREIGN KEY (name, version) REFERENCES saga.saga_definition (name, version)
);
-- Timers are claimed by `wake_at <= now()`; only active sagas have one.
CREATE INDEX saga_wake_idx ON saga.saga (wake_at) WHERE wake_at IS NOT NULL;
CREATE INDEX saga_status_idx ON saga.saga (status, updated_at DESC);
CREATE INDEX saga_created_idx ON saga.saga (created_at DESC);

CREATE TABLE saga.saga_step (
    saga_id     uuid        NOT NULL REFERENCES saga.saga (id) ON DELETE CASCADE,
    idx         int         NOT NULL,
    name        text        NOT NULL,
    status      text        NOT NULL CHECK (status IN
                    ('pending', 'dispatched', 'succeeded', 'failed', 'unknown', 'compensating',
                     'compensated', 'compensation_failed', 'skipped')),
    attempts    int         NOT NULL DEFAULT 0,
    awaiting    boolean     NOT NULL DEFAULT false,
    due_at      timestamptz,
    output      jsonb,
    error       jsonb,
    started_at  timestamptz,
    finished_at timestamptz,
    PRIMARY KEY (saga_id, idx)
);

-- Append-only history: one row per transition and per operator action.
CREATE TABLE saga.saga_event (
    id          bigserial   PRIMARY KEY,
    saga_id     uuid        NOT NULL REFERENCES saga.saga (id) ON DELETE CASCADE,
    at          timestamptz NOT NULL,
    kind        text        NOT NULL,
    step        int,
    phase       text,
    attempt     int,
    detail      jsonb,
    actor       text        NOT NULL DEFAULT 'sagad'
);
CREATE INDEX saga_event_saga_idx ON saga.saga_event (saga_id, id);

-- Commands whose transition is committed but whose delivery Kafka has not
-- yet confirmed. sagad deletes a row once the broker acknowledged it.
CREATE TABLE saga.outbox (
    id          bigserial   PRIMARY KEY,
    saga_id     uuid        NOT NULL,
    topic       text        NOT NULL,
    msg_key     text        NOT NULL,
    payload     text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
