ALTER TABLE nonce_fence DROP COLUMN redis_primaries;
