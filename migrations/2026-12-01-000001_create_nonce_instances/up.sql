-- Every running instance, as it last read the nonce fence: when (seen_ms), which
-- episode it has taken in (acked_started_ms, the episode's start) and when it did
-- (acked_at_ms). An instance that has taken in an episode claims nonces in PostgreSQL
-- too; one that has not may still claim in Redis alone until seen_ms + the lease.
-- See docs/operations.md.
CREATE TABLE nonce_instances (
    instance_id      TEXT   PRIMARY KEY,
    seen_ms          BIGINT NOT NULL,
    acked_started_ms BIGINT NOT NULL,
    acked_at_ms      BIGINT NOT NULL
);
