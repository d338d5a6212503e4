DROP INDEX IF EXISTS idx_sessions_default_expires_at;
CREATE INDEX IF NOT EXISTS idx_sessions_expires_at ON sessions (expires_at);
