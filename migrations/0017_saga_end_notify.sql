-- A saga that reaches an end (completed, compensated, resolved) or stops
-- for an operator (failed) says so on channel saga_end, its id as the
-- payload, when its transaction commits: the HTTP API's long polls
-- (GET /v1/sagas/{id}?wait=) wake on it instead of polling. One
-- notification per saga end; other updates do not call the function.
CREATE FUNCTION saga.notify_end() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('saga_end', NEW.id::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER saga_end AFTER UPDATE OF status ON saga.saga
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status
                       AND NEW.status IN ('completed', 'compensated', 'failed', 'resolved'))
    EXECUTE FUNCTION saga.notify_end();
