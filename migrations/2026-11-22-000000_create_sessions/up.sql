-- Sessions: the source of truth. The session key is stored only wrapped (AES-256-GCM
-- under a key-wrapping key, session id as AAD); kek_id names the wrapping key.
CREATE TABLE sessions (
    session_id   VARCHAR(64)  PRIMARY KEY,
    wrapped_key  BYTEA        NOT NULL,
    kek_id       VARCHAR(64)  NOT NULL,
    session_type VARCHAR(32)  NOT NULL,
    client_id    VARCHAR(128) NOT NULL,
    principal    VARCHAR(255) NULL,
    created_at   TIMESTAMPTZ  NOT NULL DEFAULT now(),
    expires_at   TIMESTAMPTZ  NOT NULL
);
CREATE INDEX idx_sessions_expires_at ON sessions (expires_at);
CREATE INDEX idx_sessions_client_id ON sessions (client_id);
