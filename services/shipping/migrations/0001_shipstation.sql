-- ShipStation data per integration (one ShipStation account/store), and the sync logs.

CREATE TABLE integrations (
    id                 uuid PRIMARY KEY,
    name               text NOT NULL UNIQUE,
    store_id           bigint NOT NULL DEFAULT 0,
    api_key            text NOT NULL,
    api_secret         text NOT NULL,
    v2_api_key         text NOT NULL,
    active             boolean NOT NULL DEFAULT true,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    products_synced_at timestamptz
);

-- v1 /warehouses (ship-from).
CREATE TABLE warehouses (
    integration_id uuid NOT NULL REFERENCES integrations (id),
    warehouse_id   text NOT NULL,
    name           text NOT NULL,
    is_default     boolean NOT NULL,
    origin         jsonb NOT NULL,
    created_at     timestamptz,
    deleted_at     timestamptz,
    synced_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (integration_id, warehouse_id)
);

-- v2 /v2/inventory_warehouses.
CREATE TABLE inventory_warehouses (
    integration_id         uuid NOT NULL REFERENCES integrations (id),
    inventory_warehouse_id text NOT NULL,
    name                   text NOT NULL,
    created_at             timestamptz,
    updated_at             timestamptz,
    deleted_at             timestamptz,
    synced_at              timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (integration_id, inventory_warehouse_id)
);

-- v2 /v2/inventory_locations.
CREATE TABLE inventory_locations (
    integration_id         uuid NOT NULL REFERENCES integrations (id),
    inventory_location_id  text NOT NULL,
    inventory_warehouse_id text NOT NULL,
    name                   text NOT NULL,
    created_at             timestamptz,
    updated_at             timestamptz,
    deleted_at             timestamptz,
    synced_at              timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (integration_id, inventory_location_id)
);

-- v1 /products.
CREATE TABLE products (
    integration_id uuid NOT NULL REFERENCES integrations (id),
    product_id     bigint NOT NULL,
    sku            text NOT NULL,
    name           text NOT NULL,
    price          numeric(14, 4),
    default_cost   numeric(14, 4),
    weight_oz      double precision,
    active         boolean NOT NULL,
    created_at     timestamptz,
    modified_at    timestamptz,
    deleted_at     timestamptz,
    synced_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (integration_id, product_id)
);
CREATE INDEX products_sku ON products (integration_id, sku);
CREATE INDEX products_name ON products (integration_id, lower(name) text_pattern_ops);

-- v2 /v2/inventory (location '' when ShipStation gives none).
CREATE TABLE inventory (
    integration_id         uuid NOT NULL REFERENCES integrations (id),
    sku                    text NOT NULL,
    inventory_warehouse_id text NOT NULL,
    inventory_location_id  text NOT NULL,
    on_hand                bigint NOT NULL,
    allocated              bigint NOT NULL,
    available              bigint NOT NULL,
    average_cost           numeric(14, 4),
    currency               text NOT NULL DEFAULT '',
    deleted_at             timestamptz,
    synced_at              timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (integration_id, sku, inventory_warehouse_id, inventory_location_id)
);
CREATE INDEX inventory_by_warehouse ON inventory (integration_id, inventory_warehouse_id);
CREATE INDEX inventory_by_location ON inventory (integration_id, inventory_location_id);

-- The seed's sync log: one row per (non dry-run) sync run, with every operation's result.
CREATE TABLE sync_logs (
    id                    bigserial PRIMARY KEY,
    "timestamp"           timestamptz NOT NULL DEFAULT now(),
    job_id                uuid,
    scope                 text NOT NULL,
    full_sync             boolean NOT NULL,
    total_operations      integer NOT NULL,
    successful_operations integer NOT NULL,
    failed_operations     integer NOT NULL,
    total_duration_ms     bigint NOT NULL,
    results               jsonb NOT NULL,
    message               text NOT NULL DEFAULT ''
);
CREATE INDEX sync_logs_time ON sync_logs ("timestamp" DESC, id DESC);
CREATE INDEX sync_logs_failed ON sync_logs ("timestamp" DESC, id DESC) WHERE failed_operations > 0;
