CREATE TABLE time_entries (
    entry_id uuid PRIMARY KEY,
    email text NOT NULL,
    project_id text NOT NULL,
    entry_date date NOT NULL,
    duration_minutes integer NOT NULL CHECK (duration_minutes > 0 AND duration_minutes <= 1440),
    description text NOT NULL,
    billable boolean NOT NULL,
    version bigint NOT NULL,
    deleted boolean NOT NULL DEFAULT false,
    create_time timestamptz NOT NULL,
    update_time timestamptz NOT NULL,
    stored_time timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX time_entries_by_user_date ON time_entries (email, entry_date, entry_id);

CREATE TABLE projects (
    project_id text PRIMARY KEY,
    name text NOT NULL,
    status text NOT NULL,
    synced_time timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE project_access (
    email text NOT NULL,
    project_id text NOT NULL,
    PRIMARY KEY (email, project_id)
);

CREATE TABLE zoho_users (
    user_id text PRIMARY KEY,
    email text NOT NULL
);
