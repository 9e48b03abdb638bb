-- Operator repairs: a saga an operator closed by hand is `resolved`; an
-- operator's retry gives a step a fresh attempt budget while its attempt
-- numbers go on (attempt_base = attempts made before that budget).
ALTER TABLE saga.saga DROP CONSTRAINT saga_status_check;
ALTER TABLE saga.saga ADD CONSTRAINT saga_status_check CHECK (status IN
    ('running', 'compensating', 'completed', 'compensated', 'failed', 'resolved'));
ALTER TABLE saga.saga_step ADD COLUMN attempt_base int NOT NULL DEFAULT 0;
-- `sagactl stuck` looks for active sagas that stopped making progress.
CREATE INDEX saga_active_updated_idx ON saga.saga (updated_at)
    WHERE status IN ('running', 'compensating', 'failed');
