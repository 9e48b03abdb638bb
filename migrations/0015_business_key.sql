-- A business key: the caller's own name for a saga ("order-4711"), given
-- when it is started (the HTTP API, sagactl start --business-key), kept on
-- the request and the saga, and searchable (GET /v1/sagas?business_key=,
-- sagactl list --key). Not unique: a business may run several sagas for
-- one order (the Idempotency-Key is what makes a start unique).
ALTER TABLE saga.start_request ADD COLUMN business_key text
    CHECK (length(business_key) BETWEEN 1 AND 200);
ALTER TABLE saga.saga ADD COLUMN business_key text;
-- The search's order (newest first) within one key; sagas without a key
-- cost nothing here.
CREATE INDEX saga_business_key_idx ON saga.saga (business_key, created_at DESC, id DESC)
    WHERE business_key IS NOT NULL;
