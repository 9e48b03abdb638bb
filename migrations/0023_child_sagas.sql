-- Child sagas (docs/DEFINITIONS.md, "Child sagas"): a child step starts
-- another definition as a saga of its own and ends with it. The child's
-- id is derived from its parent's and the step's (saga_child_id), so
-- starting it again names the same saga. A row here links the two and
-- carries what each must tell the other, written in the transaction of
-- the transition that caused it and delivered by sagad in the
-- transaction of the transition it causes:
--   ended_*:      the child ended (or its start was refused, or it cannot
--                 be undone): the parent is told until notified_at is set;
--   compensate_*: the parent is undoing the step: the child is asked to
--                 undo until compensate_done_at is set (retry_at: a child
--                 that cannot take it yet, running past its pivot or stuck,
--                 is asked again then).
CREATE TABLE saga.saga_child (
    child_id           uuid        PRIMARY KEY,
    parent_id          uuid        NOT NULL REFERENCES saga.saga (id) ON DELETE CASCADE,
    parent_step        int         NOT NULL CHECK (parent_step >= 0),
    definition         text        NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    ended_status       text        CHECK (ended_status IN
                           ('completed', 'compensated', 'resolved', 'rejected', 'uncompensable')),
    result             jsonb,
    ended_at           timestamptz,
    notified_at        timestamptz,
    compensate_at      timestamptz,
    compensate_done_at timestamptz,
    retry_at           timestamptz,
    -- Deliveries whose transaction failed: at the fifth, set aside as a
    -- dead letter (DESIGN rule 9).
    failures           int         NOT NULL DEFAULT 0,
    UNIQUE (parent_id, parent_step)
);
CREATE INDEX saga_child_to_notify_idx ON saga.saga_child (ended_at)
    WHERE ended_at IS NOT NULL AND notified_at IS NULL;
CREATE INDEX saga_child_to_compensate_idx ON saga.saga_child (compensate_at)
    WHERE compensate_at IS NOT NULL AND compensate_done_at IS NULL;
-- The saga a child belongs to, carried from its start request.
ALTER TABLE saga.saga ADD COLUMN parent_id uuid, ADD COLUMN parent_step int;
ALTER TABLE saga.start_request ADD COLUMN parent_id uuid, ADD COLUMN parent_step int;
-- A link that could not be delivered is a dead letter like a message.
ALTER TABLE saga.dead_letter DROP CONSTRAINT dead_letter_source_check;
ALTER TABLE saga.dead_letter ADD CONSTRAINT dead_letter_source_check
    CHECK (source IN ('reply', 'timer', 'start_request', 'child_link'));
