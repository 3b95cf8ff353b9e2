-- The schedule each job had when a replica last started with it. A job enabled again, or given
-- a new cron or time zone, counts its due times from that moment: the time it was off (or on
-- another schedule) is not recorded as missed runs.
ALTER TABLE job_state
    ADD COLUMN enabled boolean,
    ADD COLUMN cron text,
    ADD COLUMN time_zone text,
    -- When the current schedule took effect (first seen, enabled again or changed); NULL means
    -- since first_seen. Due times before it are not the scheduler's.
    ADD COLUMN schedule_since timestamptz;
