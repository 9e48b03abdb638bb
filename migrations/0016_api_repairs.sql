-- Repairs made through the HTTP API are recorded as the operator token
-- that made them ("token:<name>", docs/API.md): never a string the caller
-- chose. sagad writes these history lines; this trigger makes sure nobody
-- else can (an operator with database rights could otherwise write a line
-- in a token's name) and that the name is a live operator token. Only
-- "token:" lines pay for it (the WHEN is checked without a call).
CREATE FUNCTION saga.check_token_actor() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM saga.api_token t WHERE NEW.actor = 'token:' || t.name
                   AND t.role = 'operator' AND t.revoked_at IS NULL) THEN
        RAISE EXCEPTION 'history line in the name of %: no such live operator token',
            NEW.actor USING ERRCODE = '42501';
    END IF;
    -- With the roles of `sagactl roles create`, only sagad's (saga_engine)
    -- or the schema's owner may speak for a token.
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'saga_engine')
       AND NOT pg_has_role(session_user, 'saga_engine', 'MEMBER')
       AND NOT pg_has_role(session_user,
                           (SELECT nspowner FROM pg_namespace WHERE nspname = 'saga'),
                           'MEMBER') THEN
        RAISE EXCEPTION 'role % may not write history in the name of % (only sagad, role saga_engine, records what an API token did)',
            session_user, NEW.actor USING ERRCODE = '42501';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER saga_event_token BEFORE INSERT ON saga.saga_event
    FOR EACH ROW WHEN (NEW.actor LIKE 'token:%') EXECUTE FUNCTION saga.check_token_actor();
