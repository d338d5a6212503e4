CREATE TABLE sessions_unpartitioned (
    session_id   VARCHAR(64)  PRIMARY KEY,
    wrapped_key  BYTEA        NOT NULL,
    kek_id       VARCHAR(64)  NOT NULL,
    session_type VARCHAR(32)  NOT NULL,
    client_id    VARCHAR(128) NOT NULL,
    principal    VARCHAR(255) NULL,
    created_at   TIMESTAMPTZ  NOT NULL DEFAULT now(),
    expires_at   TIMESTAMPTZ  NOT NULL
);
INSERT INTO sessions_unpartitioned SELECT * FROM sessions ON CONFLICT DO NOTHING;
DROP TABLE sessions;
DROP VIEW session_crypto_partitions;
DROP FUNCTION session_crypto_ensure_partition(TIMESTAMPTZ, TIMESTAMPTZ);
DROP FUNCTION session_crypto_drop_expired_partitions(TIMESTAMPTZ);
ALTER TABLE sessions_unpartitioned RENAME TO sessions;
ALTER INDEX sessions_unpartitioned_pkey RENAME TO sessions_pkey;
CREATE INDEX idx_sessions_expires_at ON sessions (expires_at);
CREATE INDEX idx_sessions_client_id ON sessions (client_id);
