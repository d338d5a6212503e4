ALTER TABLE nonce_fence DROP COLUMN closed_at_ms;
