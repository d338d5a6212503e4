-- The protocol version each session speaks (docs/PROTOCOL.md): 1 for every session
-- created before versions existed, 2 for a session whose wrapped_key holds the two
-- directional keys of protocol v2 (92 bytes instead of 60). The version is also bound
-- into the wrapping AAD, so a row whose protocol is changed no longer unwraps.
ALTER TABLE sessions ADD COLUMN protocol SMALLINT NOT NULL DEFAULT 1 CHECK (protocol IN (1, 2));
