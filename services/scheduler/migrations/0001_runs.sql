-- Scheduler state shared by every replica: per-job pause flags and one row per due time.
CREATE TABLE job_state (
    name text PRIMARY KEY,
    -- When a replica first saw the job: due times before it are not the scheduler's.
    first_seen timestamptz NOT NULL,
    -- The latest due time recorded in runs (kept when old runs are pruned).
    last_due timestamptz,
    paused boolean NOT NULL DEFAULT false,
    paused_at timestamptz
);

CREATE TABLE runs (
    id uuid PRIMARY KEY,
    job text NOT NULL,
    trigger text NOT NULL CHECK (trigger IN ('schedule', 'catch_up', 'manual')),
    scheduled_time timestamptz NOT NULL,
    fire_time timestamptz NOT NULL,
    status text NOT NULL
        CHECK (status IN ('RUNNING', 'SUCCEEDED', 'PARTIAL', 'FAILED', 'SKIPPED', 'MISSED')),
    started_at timestamptz,
    finished_at timestamptz,
    deadline_at timestamptz,
    claimed_by text NOT NULL DEFAULT '',
    lease_expires_at timestamptz,
    attempts integer NOT NULL DEFAULT 0,
    target text NOT NULL DEFAULT '',
    target_address text NOT NULL DEFAULT '',
    scope text NOT NULL DEFAULT '',
    full_sync boolean NOT NULL DEFAULT false,
    reason text NOT NULL DEFAULT '',
    target_job_id text NOT NULL DEFAULT '',
    report jsonb,
    error text NOT NULL DEFAULT ''
);
-- Exactly one row per (job, due time), whichever replica claims it first.
CREATE UNIQUE INDEX runs_one_per_due_time ON runs (job, scheduled_time)
    WHERE trigger <> 'manual';
CREATE INDEX runs_by_job ON runs (job, scheduled_time DESC, id DESC);
CREATE INDEX runs_by_time ON runs (scheduled_time DESC, id DESC);
CREATE INDEX runs_running ON runs (lease_expires_at) WHERE status = 'RUNNING';
