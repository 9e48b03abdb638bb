-- W3C trace context (docs/OPERATIONS.md, "Tracing"): each saga keeps the
-- traceparent of its own span (the trace it was started in, or a new one);
-- a start request carries the caller's; an outbox row carries the
-- command's (the saga's trace id, the step attempt's span id), which
-- sagad sends as the Kafka header `traceparent`. NULL for rows from before.
ALTER TABLE saga.saga ADD COLUMN traceparent text;
ALTER TABLE saga.start_request ADD COLUMN traceparent text;
ALTER TABLE saga.outbox ADD COLUMN traceparent text;
