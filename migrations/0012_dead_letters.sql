-- Dead letters: what sagad set aside so that it could not stall the work
-- around it (DESIGN rule 9). A reply that cannot be decoded, or that makes
-- its transaction fail again and again on its own, a saga whose timer
-- fails the same way, a start request that cannot be turned into a saga:
-- each gets one row here with its reason, and the work behind it goes on.
-- `sagactl dead list|show|replay|purge` reads and acts on them.
CREATE TABLE saga.dead_letter (
    id            bigserial   PRIMARY KEY,
    -- reply: a message of the reply topic; timer: a saga whose timer was
    -- cleared; start_request: a request marked processed with an error.
    source        text        NOT NULL
                  CHECK (source IN ('reply', 'timer', 'start_request')),
    -- Where the message was (replies only).
    topic         text,
    kafka_partition int,
    kafka_offset  bigint,
    msg_key       text,
    -- The saga (or start request) it concerns, as far as it could be read.
    ref           text,
    -- The message as received, at most its first 65,536 bytes
    -- (payload_bytes says how long it was): a truncated one is not replayed.
    payload       bytea,
    payload_bytes int         NOT NULL DEFAULT 0,
    reason        text        NOT NULL,
    attempts      int         NOT NULL DEFAULT 1,
    created_at    timestamptz NOT NULL DEFAULT now(),
    created_by    text        NOT NULL DEFAULT 'sagad',
    replayed_at   timestamptz,
    replayed_by   text,
    replay_reason text
);
-- A reply consumed again (after a rewind or a restart) is set aside once.
CREATE UNIQUE INDEX dead_letter_message_idx
    ON saga.dead_letter (topic, kafka_partition, kafka_offset)
    WHERE kafka_offset IS NOT NULL;
CREATE INDEX dead_letter_created_idx ON saga.dead_letter (created_at);
CREATE INDEX dead_letter_ref_idx ON saga.dead_letter (ref);
