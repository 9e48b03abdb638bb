-- Conditional steps (docs/DEFINITIONS.md, "Conditions"): a step whose
-- "when" is false when its turn comes is not run, and has nothing to
-- compensate.
ALTER TABLE saga.saga_step DROP CONSTRAINT saga_step_status_check;
ALTER TABLE saga.saga_step ADD CONSTRAINT saga_step_status_check CHECK (status IN
    ('pending', 'dispatched', 'succeeded', 'failed', 'unknown', 'compensating',
     'compensated', 'compensation_failed', 'skipped', 'not_run'));
