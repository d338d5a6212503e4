-- The identities (`run_id`s) of the Redis primaries the deployment last saw, recorded by
-- a running instance whenever they change. A primary that is not among them at start-up
-- was restarted or replaced while no instance watched it (an older snapshot, a replica
-- that missed writes): the starting instance fences (docs/operations.md, "The
-- edges"). NULL: never recorded (a deployment upgraded from an earlier release).
ALTER TABLE nonce_fence ADD COLUMN redis_primaries TEXT;
