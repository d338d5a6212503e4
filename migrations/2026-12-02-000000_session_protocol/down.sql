-- v2 sessions cannot be read without the column: remove them first.
DELETE FROM sessions WHERE protocol <> 1;
ALTER TABLE sessions DROP COLUMN protocol;
