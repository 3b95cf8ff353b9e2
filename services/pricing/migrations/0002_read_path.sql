-- Read path (GetLatestPrices cache, arbitrage scan).

-- A product's data version: a new value of this sequence in every transaction that changes
-- what GetLatestPrices answers for it (its latest prices, its catalog entry or variants). The
-- per-replica read cache (shared/readcache.py) asks for it in the query that reads the prices.
CREATE SEQUENCE price_data_version;
ALTER TABLE products ADD COLUMN data_version bigint NOT NULL DEFAULT nextval('price_data_version');

-- The lowest ask as float8, so that ListArbitrageOpportunities scans without converting a
-- numeric per row.
ALTER TABLE master_market_latest
    ADD COLUMN lowest_ask_float float8 GENERATED ALWAYS AS (lowest_ask::float8) STORED;
