-- Bearer tokens of the HTTP API (docs/API.md, "Tokens and roles"), made by
-- `sagactl tokens create`: only a SHA-256 of each token is kept (the token
-- is shown once), with the name the API records as the caller and the
-- role that says what it may do. A revoked token stays, so that its name
-- is never given to another.
CREATE TABLE saga.api_token (
    name        text        PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9._-]{1,56}$'),
    role        text        NOT NULL CHECK (role IN ('starter', 'operator', 'reader')),
    hash        text        NOT NULL UNIQUE CHECK (hash ~ '^[0-9a-f]{64}$'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  name        NOT NULL DEFAULT session_user,
    revoked_at  timestamptz,
    revoked_by  name
);
