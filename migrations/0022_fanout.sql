-- Fan-out steps (docs/DEFINITIONS.md, "Fan-out"): a step with "for_each"
-- runs once per element of a list. Each element is run as a step is (its
-- own status, attempts, timers, output and error), so each has a row
-- here, written by sagad's one writer in the transaction of the saga's
-- transition. The step's own row keeps the fan-out's status, its earliest
-- timer and, once every element succeeded, the list of their outputs.
CREATE TABLE saga.saga_element (
    saga_id      uuid        NOT NULL,
    step         int         NOT NULL,
    idx          int         NOT NULL CHECK (idx >= 0),
    status       text        NOT NULL CHECK (status IN
                     ('pending', 'dispatched', 'succeeded', 'failed', 'unknown',
                      'compensating', 'compensated', 'compensation_failed', 'skipped')),
    attempts     int         NOT NULL DEFAULT 0,
    attempt_base int         NOT NULL DEFAULT 0,
    awaiting     boolean     NOT NULL DEFAULT false,
    due_at       timestamptz,
    output       jsonb,
    error        jsonb,
    started_at   timestamptz,
    finished_at  timestamptz,
    PRIMARY KEY (saga_id, step, idx),
    FOREIGN KEY (saga_id, step) REFERENCES saga.saga_step (saga_id, idx) ON DELETE CASCADE
);
