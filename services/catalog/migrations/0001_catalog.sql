-- The catalog's PostgreSQL tier: NetSuite customers and items with their sync state, the
-- incremental-sync cursors, the seed's sync-job view, system logs and the customer KPI view.
CREATE TABLE customers (
    netsuite_id bigint PRIMARY KEY,
    entity_id text NOT NULL DEFAULT '',
    company_name text NOT NULL DEFAULT '',
    is_person boolean NOT NULL DEFAULT false,
    first_name text NOT NULL DEFAULT '',
    last_name text NOT NULL DEFAULT '',
    email text NOT NULL DEFAULT '',
    phone text NOT NULL DEFAULT '',
    subsidiary text NOT NULL DEFAULT '',
    address text NOT NULL DEFAULT '',
    city text NOT NULL DEFAULT '',
    country text NOT NULL DEFAULT '',
    industry text NOT NULL DEFAULT '',
    is_inactive boolean NOT NULL DEFAULT false,
    date_created timestamptz,
    last_modified timestamptz,
    content_hash text NOT NULL,
    sync_status text NOT NULL DEFAULT 'PENDING'
        CHECK (sync_status IN ('PENDING', 'SYNCED', 'FAILED')),
    sync_error text NOT NULL DEFAULT '',
    last_synced_at timestamptz,
    deleted_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX customers_live ON customers (netsuite_id) WHERE deleted_at IS NULL;

CREATE TABLE items (
    netsuite_id bigint PRIMARY KEY,
    item_id text NOT NULL DEFAULT '',
    display_name text NOT NULL DEFAULT '',
    item_type text NOT NULL DEFAULT '',
    base_price numeric(14, 2),
    is_inactive boolean NOT NULL DEFAULT false,
    last_modified timestamptz,
    content_hash text NOT NULL,
    sync_status text NOT NULL DEFAULT 'PENDING'
        CHECK (sync_status IN ('PENDING', 'SYNCED', 'FAILED')),
    sync_error text NOT NULL DEFAULT '',
    last_synced_at timestamptz,
    deleted_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Where the last incremental sync of an entity got to (NetSuite's own lastModifiedDate).
CREATE TABLE sync_cursors (
    entity text PRIMARY KEY,
    last_modified timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The seed's sync-job table, as a view over the shared sync_jobs.
CREATE VIEW netsuite_sync_jobs AS
SELECT id,
       scope,
       CASE status WHEN 'PARTIAL' THEN 'COMPLETED' ELSE status END AS status,
       started_at,
       finished_at AS completed_at,
       coalesce((counts ->> 'seen')::bigint, 0) AS total_records,
       coalesce((counts ->> 'created')::bigint, 0) AS new_records,
       coalesce((counts ->> 'updated')::bigint, 0) AS updated_records,
       coalesce((counts ->> 'unchanged')::bigint, 0) AS unchanged_records,
       coalesce((counts ->> 'deleted')::bigint, 0) AS deleted_records,
       coalesce((counts ->> 'failed')::bigint, 0) AS failed_records,
       nullif(error, '') AS error_message,
       dry_run
FROM sync_jobs
WHERE scope IN ('customers', 'items', 'all');

CREATE TABLE system_logs (
    id bigserial PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now(),
    level text NOT NULL CHECK (level IN ('INFO', 'WARNING', 'ERROR')),
    source text NOT NULL,
    message text NOT NULL,
    details jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX system_logs_recent ON system_logs (created_at DESC);

-- The expensive counts, computed live (what the seed did on every request)...
CREATE VIEW customer_kpis_live AS
SELECT 1 AS id,
       (SELECT count(*) FROM customers WHERE deleted_at IS NULL) AS total_customers,
       (SELECT count(*) FROM customers WHERE deleted_at IS NULL AND NOT is_inactive
            AND sync_status <> 'FAILED') AS active_customers,
       (SELECT count(*) FROM customers WHERE deleted_at IS NULL
            AND date_created >= now() - interval '30 days') AS new_customers_30d,
       (SELECT count(*) FROM items WHERE deleted_at IS NULL) AS total_items,
       (SELECT count(*) FROM items WHERE deleted_at IS NULL AND NOT is_inactive
            AND sync_status <> 'FAILED') AS active_items,
       (SELECT count(*) FROM customers WHERE deleted_at IS NULL AND sync_status = 'FAILED')
         + (SELECT count(*) FROM items WHERE deleted_at IS NULL AND sync_status = 'FAILED')
         AS failed_records,
       (SELECT count(*) FROM customers WHERE deleted_at IS NOT NULL)
         + (SELECT count(*) FROM items WHERE deleted_at IS NOT NULL) AS deleted_records,
       (SELECT coalesce(jsonb_object_agg(country, n), '{}') FROM (
            SELECT country, count(*) AS n FROM customers WHERE deleted_at IS NULL
            GROUP BY country) c) AS customers_by_country,
       (SELECT coalesce(jsonb_object_agg(item_type, n), '{}') FROM (
            SELECT item_type, count(*) AS n FROM items WHERE deleted_at IS NULL
            GROUP BY item_type) t) AS items_by_type,
       now() AS last_updated;

-- ...and cached: computed on refresh only. One row (id = 1); the unique index lets
-- REFRESH MATERIALIZED VIEW CONCURRENTLY run while readers read.
CREATE MATERIALIZED VIEW customer_kpis_cache AS SELECT * FROM customer_kpis_live;
CREATE UNIQUE INDEX customer_kpis_cache_id ON customer_kpis_cache (id);
