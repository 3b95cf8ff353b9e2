-- Every sync job a service runs, and the locks that keep one job per scope across replicas.
CREATE TABLE sync_jobs (
    id uuid PRIMARY KEY,
    scope text NOT NULL,
    status text NOT NULL CHECK (status IN ('RUNNING', 'COMPLETED', 'PARTIAL', 'FAILED')),
    full_sync boolean NOT NULL DEFAULT false,
    dry_run boolean NOT NULL DEFAULT false,
    reason text NOT NULL DEFAULT '',
    started_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    counts jsonb NOT NULL DEFAULT '{}',
    operations jsonb NOT NULL DEFAULT '[]',
    error text NOT NULL DEFAULT '',
    message text NOT NULL DEFAULT '',
    progress double precision NOT NULL DEFAULT 0,
    replica text NOT NULL DEFAULT ''
);
CREATE INDEX sync_jobs_by_scope ON sync_jobs (scope, started_at DESC, id DESC);
CREATE INDEX sync_jobs_by_start ON sync_jobs (started_at DESC, id DESC);
CREATE INDEX sync_jobs_running ON sync_jobs (status) WHERE status = 'RUNNING';

CREATE TABLE sync_locks (
    lock_key text PRIMARY KEY,
    job_id uuid NOT NULL REFERENCES sync_jobs (id) ON DELETE CASCADE,
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);
