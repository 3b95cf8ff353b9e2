-- Products we price (StockX catalog metadata, fetched once per product).
CREATE TABLE products (
    product_id        text PRIMARY KEY,
    sku               text NOT NULL DEFAULT '',          -- StockX styleId
    title             text NOT NULL DEFAULT '',
    brand             text NOT NULL DEFAULT '',
    catalog_synced_at timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX products_sku ON products (upper(sku)) WHERE sku <> '';

CREATE TABLE product_variants (
    product_id    text NOT NULL,
    variant_id    text NOT NULL,
    variant_value text NOT NULL DEFAULT '',
    PRIMARY KEY (product_id, variant_id)
);

-- Raw market-data snapshots: an audit trail, appended (COPY), never updated, pruned by age.
CREATE TABLE master_market_data (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    product_id      text NOT NULL,
    variant_id      text NOT NULL,
    currency_code   text NOT NULL,
    lowest_ask      numeric,
    highest_bid     numeric,
    sell_faster     numeric,
    earn_more       numeric,
    flex_lowest_ask numeric,
    last_sale       numeric,
    snapshot_time   timestamptz NOT NULL,
    sync_job_id     text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX master_market_data_snapshot_time ON master_market_data (snapshot_time);
CREATE INDEX master_market_data_product ON master_market_data (product_id, currency_code, snapshot_time DESC);

-- The newest snapshot per product, variant and currency (kept in the same transaction).
CREATE TABLE master_market_latest (
    product_id      text NOT NULL,
    variant_id      text NOT NULL,
    currency_code   text NOT NULL,
    lowest_ask      numeric,
    highest_bid     numeric,
    sell_faster     numeric,
    earn_more       numeric,
    flex_lowest_ask numeric,
    last_sale       numeric,
    snapshot_time   timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (product_id, variant_id, currency_code)
);
CREATE INDEX master_market_latest_currency_time ON master_market_latest (currency_code, snapshot_time);

CREATE TABLE portfolio_items (
    user_email text NOT NULL,
    product_id text NOT NULL,
    variant_id text NOT NULL DEFAULT '',
    quantity   integer NOT NULL CHECK (quantity > 0),
    added_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_email, product_id, variant_id)
);
CREATE INDEX portfolio_items_product ON portfolio_items (product_id);

CREATE TABLE product_views (
    product_id     text PRIMARY KEY,
    view_count     bigint NOT NULL DEFAULT 0,
    last_viewed_at timestamptz NOT NULL
);
CREATE INDEX product_views_last_viewed ON product_views (last_viewed_at DESC);

-- Products a run did not reach (time budget): they lead the next run.
CREATE TABLE sync_backlog (
    product_id  text PRIMARY KEY,
    queued_at   timestamptz NOT NULL DEFAULT now(),
    sync_job_id text NOT NULL DEFAULT ''
);

-- FX rates as units of the currency per 1 USD, with the time they were true.
CREATE TABLE fx_rates (
    currency_code text PRIMARY KEY,
    units_per_usd numeric NOT NULL CHECK (units_per_usd > 0),
    as_of         timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
