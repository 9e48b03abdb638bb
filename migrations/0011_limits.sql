-- Limits on what one input can hold, so that no single message stalls or
-- corrupts anything (issue 11). A saga's input goes into its steps'
-- commands and a step's output into later ones; Kafka refuses a message
-- over 1 MB by default, so each is held well under that, with room for
-- the envelope and for several of them in one command.
--
-- Sizes are the bytes of the value's JSON text as PostgreSQL prints a
-- jsonb: octet_length(value::text) (no indentation, one space after each
-- ':' and ','). Both names and columns are stable: sagactl, libsaga's
-- client and sagad read them (docs/DEFINITIONS.md, "Limits").
CREATE TABLE saga.limits (
    name        text        PRIMARY KEY CHECK (name IN
                    ('max_input_bytes', 'max_output_bytes', 'max_definition_bytes')),
    value       bigint      NOT NULL CHECK (value > 0),
    description text        NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text        NOT NULL DEFAULT 'migration 0011',
    reason      text
);
INSERT INTO saga.limits (name, value, description) VALUES
    ('max_input_bytes', 262144,
     'a saga''s input (saga.start_request.input), at sagactl start, libsaga''s client '
     'and any INSERT'),
    ('max_output_bytes', 262144,
     'a step''s output in a reply; sagad fails the step of a reply with a larger '
     'one (message_too_large), and libsaga answers so before it replies'),
    ('max_definition_bytes', 262144,
     'a saga definition (saga.saga_definition.body), at sagactl validate and defs '
     'deploy, sagad''s folder and any INSERT');

-- A missing row would silently lift a limit: change the value instead.
CREATE FUNCTION saga.limits_keep() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'restrict_violation',
        MESSAGE = format('limit %s cannot be deleted; set another value instead '
                         '(sagactl limits set %s BYTES --reason TEXT)', OLD.name, OLD.name);
END $$;
CREATE TRIGGER limits_keep BEFORE DELETE ON saga.limits
    FOR EACH ROW EXECUTE FUNCTION saga.limits_keep();

-- 2097152 -> '2,097,152': the messages below are read by people.
CREATE FUNCTION saga.bytes_text(n bigint) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT to_char(n, 'FM999,999,999,999,999,990') $$;

-- SQLSTATE 54000 (program_limit_exceeded) tells a client that the value,
-- not the database, is at fault; the message names the size and the limit.
CREATE FUNCTION saga.start_request_input_fits() RETURNS trigger
    LANGUAGE plpgsql AS $$
DECLARE
    lim bigint := (SELECT value FROM saga.limits WHERE name = 'max_input_bytes');
    size bigint := octet_length(NEW.input::text);
BEGIN
    IF size > lim THEN
        RAISE EXCEPTION USING ERRCODE = 'program_limit_exceeded',
            MESSAGE = format('input of saga "%s" is %s bytes; the limit is %s '
                             '(saga.limits max_input_bytes)',
                             NEW.name, saga.bytes_text(size), saga.bytes_text(lim)),
            HINT = 'pass a reference to large data rather than the data itself';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER start_request_input_fits BEFORE INSERT OR UPDATE OF input
    ON saga.start_request FOR EACH ROW EXECUTE FUNCTION saga.start_request_input_fits();

CREATE FUNCTION saga.definition_fits() RETURNS trigger
    LANGUAGE plpgsql AS $$
DECLARE
    lim bigint := (SELECT value FROM saga.limits WHERE name = 'max_definition_bytes');
    size bigint := octet_length(NEW.body::text);
BEGIN
    IF size > lim THEN
        RAISE EXCEPTION USING ERRCODE = 'program_limit_exceeded',
            MESSAGE = format('definition "%s" is %s bytes; the limit is %s '
                             '(saga.limits max_definition_bytes)',
                             NEW.name, saga.bytes_text(size), saga.bytes_text(lim));
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER definition_fits BEFORE INSERT OR UPDATE OF body
    ON saga.saga_definition FOR EACH ROW EXECUTE FUNCTION saga.definition_fits();
-- saga.saga has no such trigger: its rows come from start requests, which
-- were measured, and a limit lowered since must not strand them.

-- An empty idempotency key is no key. Taken as a real one, every caller
-- that passed "" for "none" got the first such caller's saga back.
UPDATE saga.start_request SET idempotency_key = NULL WHERE idempotency_key = '';
UPDATE saga.saga SET idempotency_key = NULL WHERE idempotency_key = '';
ALTER TABLE saga.start_request
    ADD CONSTRAINT start_request_key_not_empty CHECK (idempotency_key <> '');
ALTER TABLE saga.saga ADD CONSTRAINT saga_key_not_empty CHECK (idempotency_key <> '');
