-- What each sagad knows about the participant services it sends to: its
-- circuit breaker and bulkhead, published every few seconds so that
-- `sagactl stats` can show them (they live in sagad's memory; one row per
-- instance and service). Rows of an instance that stopped grow old; the
-- CLI shows their age.
CREATE TABLE saga.service_health (
    instance             text        NOT NULL,
    service              text        NOT NULL,
    breaker              text        NOT NULL,
    consecutive_failures int         NOT NULL,
    open_until           timestamptz,
    opened_total         bigint      NOT NULL,
    in_flight            int         NOT NULL,
    max_in_flight        int         NOT NULL,
    held_breaker         bigint      NOT NULL,
    held_bulkhead        bigint      NOT NULL,
    updated_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (instance, service)
);
