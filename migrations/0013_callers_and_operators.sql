-- Who started a saga, and who repaired one, from the database's own word
-- (docs/SECURITY.md). A start request records the role that inserted it
-- (requested_by: the default, and `sagactl roles create` makes a
-- saga_starter unable to write anything else), sagad copies it onto the
-- saga (started_by), and an idempotency key belongs to its caller: the
-- same key from two callers is two sagas, so no caller can squat or read
-- another's. Rows from before get the role that runs this migration.
ALTER TABLE saga.start_request ADD COLUMN requested_by name NOT NULL DEFAULT current_user;
ALTER TABLE saga.saga ADD COLUMN started_by name NOT NULL DEFAULT current_user;

ALTER TABLE saga.start_request DROP CONSTRAINT start_request_idempotency_key_key;
ALTER TABLE saga.start_request
    ADD CONSTRAINT start_request_caller_key UNIQUE (requested_by, idempotency_key);
ALTER TABLE saga.saga DROP CONSTRAINT saga_idempotency_key_key;
ALTER TABLE saga.saga ADD CONSTRAINT saga_caller_key UNIQUE (started_by, idempotency_key);
-- A starter's own sagas, found without a scan (row-level security filters
-- on it).
CREATE INDEX saga_started_by_idx ON saga.saga (started_by, created_at);

-- An operator's history line names the role that wrote it, whatever the
-- writer put there: sagactl records `operator:<its role>`, and a row
-- inserted by hand as an operator cannot claim another name. The free
-- text "on behalf of" (sagactl --as) stays in the detail beside it. Only
-- operator lines pay for the trigger (the WHEN is checked without a call).
CREATE FUNCTION saga.stamp_operator() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.actor := 'operator:' || session_user;
    IF NEW.kind LIKE 'operator\_%' AND NEW.detail IS NOT NULL
       AND jsonb_typeof(NEW.detail) = 'object' THEN
        NEW.detail := jsonb_set(NEW.detail, '{operator}', to_jsonb(session_user::text));
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER saga_event_operator BEFORE INSERT ON saga.saga_event
    FOR EACH ROW WHEN (NEW.actor LIKE 'operator:%') EXECUTE FUNCTION saga.stamp_operator();
