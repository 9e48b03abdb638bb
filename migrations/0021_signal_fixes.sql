-- Two fixes to schema 20 (signals) and 17 (ends):
-- 1. A signal sagad had to skip (its saga set aside: its definition cannot
--    be read) is deferred a while (deferred_until), so that the oldest
--    signals can never keep sagad claiming the same rows over and over,
--    nor keep newer signals from being delivered.
-- 2. Long polls are woken by every end, not only an UPDATE of a saga's
--    status: a saga inserted already ended (its first step not run, or its
--    input unresolvable), and a start request rejected or cancelled (its id
--    is the saga's).
ALTER TABLE saga.saga_signal ADD COLUMN deferred_until timestamptz;

CREATE TRIGGER saga_end_insert AFTER INSERT ON saga.saga
    FOR EACH ROW WHEN (NEW.status IN ('completed', 'compensated', 'failed', 'resolved'))
    EXECUTE FUNCTION saga.notify_end();
CREATE FUNCTION saga.notify_request_end() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('saga_end', NEW.id::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER start_request_end AFTER UPDATE OF error ON saga.start_request
    FOR EACH ROW WHEN (OLD.error IS NULL AND NEW.error IS NOT NULL)
    EXECUTE FUNCTION saga.notify_request_end();
