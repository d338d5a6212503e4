-- When the latest episode of Redis trouble was closed early: an instance wrote every
-- unexpired nonce of the `nonces` table back into Redis after Redis had been quiet,
-- so claims need Redis alone again (docs/operations.md, "Writing back"). 0: open, or
-- ended by time. A report of trouble on a closed episode begins a new one.
ALTER TABLE nonce_fence ADD COLUMN closed_at_ms BIGINT NOT NULL DEFAULT 0;
