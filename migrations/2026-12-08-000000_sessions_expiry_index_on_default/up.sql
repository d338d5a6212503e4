-- Expired sessions leave with their partition (dropped whole); only the default
-- partition is trimmed row by row, by expiry. The expiry index on every partition cost
-- each insert one more index entry for nothing (the primary key, (id, expiry), serves
-- lookups; partition bounds serve the drops): it now exists on the default partition
-- only.
DROP INDEX IF EXISTS idx_sessions_expires_at;
CREATE INDEX IF NOT EXISTS idx_sessions_default_expires_at ON sessions_default (expires_at);
