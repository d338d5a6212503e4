-- Sessions partitioned by expiry time (declarative range partitioning): the cleanup
-- job drops a partition once every session in it has expired, instead of deleting
-- rows one by one. Partitions are named sessions_p<from>_<to> (Unix seconds) and are
-- created ahead of time by the server (session_crypto_ensure_partition); rows outside
-- every partition land in sessions_default, which the cleanup job trims row by row.
-- A session id is random (128 bits): it is unique in practice, and the primary key
-- must include the partition key.
ALTER TABLE sessions RENAME TO sessions_unpartitioned;
ALTER INDEX sessions_pkey RENAME TO sessions_unpartitioned_pkey;
ALTER INDEX idx_sessions_expires_at RENAME TO idx_sessions_unpartitioned_expires_at;
ALTER INDEX idx_sessions_client_id RENAME TO idx_sessions_unpartitioned_client_id;

CREATE TABLE sessions (
    session_id   VARCHAR(64)  NOT NULL,
    wrapped_key  BYTEA        NOT NULL,
    kek_id       VARCHAR(64)  NOT NULL,
    session_type VARCHAR(32)  NOT NULL,
    client_id    VARCHAR(128) NOT NULL,
    principal    VARCHAR(255) NULL,
    created_at   TIMESTAMPTZ  NOT NULL DEFAULT now(),
    expires_at   TIMESTAMPTZ  NOT NULL,
    PRIMARY KEY (session_id, expires_at)
) PARTITION BY RANGE (expires_at);
CREATE INDEX idx_sessions_expires_at ON sessions (expires_at);
CREATE INDEX idx_sessions_client_id ON sessions (client_id);
CREATE TABLE sessions_default PARTITION OF sessions DEFAULT;

-- The range partitions of sessions, with their bounds.
CREATE VIEW session_crypto_partitions AS
SELECT c.relname AS name,
       to_timestamp(substring(c.relname FROM '^sessions_p([0-9]+)_')::BIGINT) AS from_at,
       to_timestamp(substring(c.relname FROM '_([0-9]+)$')::BIGINT) AS to_at
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
JOIN pg_class p ON p.oid = i.inhparent
WHERE p.relname = 'sessions' AND c.relname ~ '^sessions_p[0-9]+_[0-9]+$';

-- Creates the partition [from, to) unless a partition already covers part of it,
-- moving any rows of that range out of the default partition first (a partition
-- cannot be attached over them). Returns whether it created one.
CREATE FUNCTION session_crypto_ensure_partition(p_from TIMESTAMPTZ, p_to TIMESTAMPTZ)
RETURNS BOOLEAN LANGUAGE plpgsql AS $$
DECLARE
    name TEXT := format('sessions_p%s_%s',
        extract(epoch FROM p_from)::BIGINT, extract(epoch FROM p_to)::BIGINT);
BEGIN
    PERFORM pg_advisory_xact_lock(7212650001);
    IF EXISTS (SELECT 1 FROM session_crypto_partitions
               WHERE from_at < p_to AND to_at > p_from) THEN
        RETURN FALSE;
    END IF;
    CREATE TEMP TABLE IF NOT EXISTS session_crypto_moving (LIKE sessions) ON COMMIT DROP;
    WITH moved AS (
        DELETE FROM sessions_default WHERE expires_at >= p_from AND expires_at < p_to
        RETURNING *
    )
    INSERT INTO session_crypto_moving SELECT * FROM moved;
    EXECUTE format('CREATE TABLE %I PARTITION OF sessions FOR VALUES FROM (%L) TO (%L)',
        name, p_from, p_to);
    INSERT INTO sessions SELECT * FROM session_crypto_moving;
    DELETE FROM session_crypto_moving;
    RETURN TRUE;
END $$;

-- Drops every partition whose sessions have all expired by p_now; returns how many.
CREATE FUNCTION session_crypto_drop_expired_partitions(p_now TIMESTAMPTZ)
RETURNS INTEGER LANGUAGE plpgsql AS $$
DECLARE
    part RECORD;
    dropped INTEGER := 0;
BEGIN
    FOR part IN SELECT name FROM session_crypto_partitions WHERE to_at <= p_now LOOP
        EXECUTE format('DROP TABLE %I', part.name);
        dropped := dropped + 1;
    END LOOP;
    RETURN dropped;
END $$;

-- The sessions there are: each day of expiry gets its partition, then they move in.
DO $$
DECLARE
    day TIMESTAMPTZ;
BEGIN
    FOR day IN
        SELECT generate_series(date_trunc('day', min(expires_at)),
                               date_trunc('day', max(expires_at)), INTERVAL '1 day')
        FROM sessions_unpartitioned
    LOOP
        PERFORM session_crypto_ensure_partition(day, day + INTERVAL '1 day');
    END LOOP;
END $$;
INSERT INTO sessions SELECT * FROM sessions_unpartitioned;
DROP TABLE sessions_unpartitioned;
