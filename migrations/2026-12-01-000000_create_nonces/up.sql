-- Nonces claimed outside Redis: while Redis is unreachable or has lost data (a fence),
-- and for requests stamped far ahead of the server's clock. Every instance shares
-- them; one INSERT claims one. Expired rows are removed by the cleanup job.
CREATE TABLE nonces (
    nonce_key     TEXT   PRIMARY KEY,
    expires_at_ms BIGINT NOT NULL
);
CREATE INDEX idx_nonces_expires_at ON nonces (expires_at_ms);

-- The fence every instance obeys (one row once the deployment has run): when the
-- latest episode of Redis trouble (an outage or a loss of data) began, and when an
-- instance last reported it. See docs/operations.md.
CREATE TABLE nonce_fence (
    id            SMALLINT PRIMARY KEY CHECK (id = 1),
    started_at_ms BIGINT   NOT NULL,
    last_seen_ms  BIGINT   NOT NULL
);

-- A deployment upgraded from a release before the fence has run (it has sessions): its
-- Redis holds nonces under the old key names, which this release does not read. The
-- row makes the first instance of this release find the bucket markers missing in a
-- deployment that ran before, and fence (see docs/operations.md, "The edges").
INSERT INTO nonce_fence (id, started_at_ms, last_seen_ms)
SELECT 1, 0, 0 WHERE EXISTS (SELECT 1 FROM sessions);
