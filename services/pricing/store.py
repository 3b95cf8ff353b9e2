"""Every SQL statement of the pricing service (schema ``pricing``; see migrations/)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg

__all__ = [
    "SPREAD_DECIMALS",
    "ArbitrageRow",
    "FreshnessRow",
    "LatestRow",
    "PricingStore",
    "ProductRow",
    "QuantityOverLimit",
    "SnapshotRow",
    "WriteResult",
]

# Spreads are compared (and answered) rounded to this many decimals: the arbitrage scan's float
# arithmetic is off by ~1e-14 where ComparePrices' decimal arithmetic is exact, and the two must
# agree on a spread that sits on the caller's threshold.
SPREAD_DECIMALS = 4

SNAPSHOT_COLUMNS = (
    "product_id", "variant_id", "currency_code", "lowest_ask", "highest_bid", "sell_faster",
    "earn_more", "flex_lowest_ask", "last_sale", "snapshot_time", "sync_job_id",
)


class QuantityOverLimit(Exception):
    """Adding to a portfolio would make the quantity held of ``keys`` (product id, variant id)
    pass the limit; nothing was added."""

    def __init__(self, keys: list[tuple[str, str]]) -> None:
        super().__init__(f"quantity over the limit for {len(keys)} item(s)")
        self.keys = keys


@dataclass(frozen=True, slots=True)
class SnapshotRow:
    product_id: str
    variant_id: str
    currency_code: str
    lowest_ask: Decimal | None
    highest_bid: Decimal | None
    sell_faster: Decimal | None
    earn_more: Decimal | None
    flex_lowest_ask: Decimal | None
    last_sale: Decimal | None
    snapshot_time: datetime

    @property
    def key(self) -> tuple[str, str, str]:
        return self.product_id, self.variant_id, self.currency_code


@dataclass(frozen=True, slots=True)
class WriteResult:
    snapshots: int  # raw rows appended
    created: int  # latest rows inserted
    updated: int  # latest rows replaced by a newer snapshot
    stale: int  # latest rows kept because they were newer than this snapshot


@dataclass(frozen=True, slots=True)
class ProductRow:
    product_id: str
    sku: str
    title: str
    brand: str


@dataclass(frozen=True, slots=True)
class LatestRow:
    """One latest price; amounts are decimal strings, None when the market has none."""

    variant_id: str
    variant_value: str
    currency_code: str
    lowest_ask: str | None
    highest_bid: str | None
    sell_faster: str | None
    earn_more: str | None
    flex_lowest_ask: str | None
    last_sale: str | None
    snapshot_time: datetime


@dataclass(frozen=True, slots=True)
class ArbitrageRow:
    product: ProductRow
    variant_id: str
    variant_value: str
    buy_currency: str
    buy_price: Decimal
    buy_converted: float
    sell_currency: str
    sell_price: Decimal
    sell_converted: float
    spread_percent: float
    snapshot_time: datetime


@dataclass(frozen=True, slots=True)
class FreshnessRow:
    currency_code: str
    fresh_products: int
    products: int
    snapshots: int
    average_age_hours: float
    newest: datetime | None


# The product's data version changes in the same statement (so the same transaction) when a
# latest row does: a replica's read cache holding the old version reloads on its next read.
_UPSERT_LATEST = """
WITH written AS (
INSERT INTO master_market_latest AS latest (
    product_id, variant_id, currency_code, lowest_ask, highest_bid, sell_faster, earn_more,
    flex_lowest_ask, last_sale, snapshot_time)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::numeric[], $5::numeric[],
                     $6::numeric[], $7::numeric[], $8::numeric[], $9::numeric[],
                     $10::timestamptz[])
ON CONFLICT (product_id, variant_id, currency_code) DO UPDATE SET
    lowest_ask = EXCLUDED.lowest_ask, highest_bid = EXCLUDED.highest_bid,
    sell_faster = EXCLUDED.sell_faster, earn_more = EXCLUDED.earn_more,
    flex_lowest_ask = EXCLUDED.flex_lowest_ask, last_sale = EXCLUDED.last_sale,
    snapshot_time = EXCLUDED.snapshot_time, updated_at = now()
WHERE latest.snapshot_time < EXCLUDED.snapshot_time
RETURNING latest.product_id, (xmax = 0) AS inserted
), bumped AS (
    UPDATE products SET data_version = nextval('price_data_version')
    WHERE product_id IN (SELECT product_id FROM written)
)
SELECT inserted FROM written
"""

# Amounts come back as text (what the API answers), sparing a Decimal per amount.
_LATEST_PRICES = """
SELECT l.variant_id, coalesce(v.variant_value, '') AS variant_value, l.currency_code,
       l.lowest_ask::text, l.highest_bid::text, l.sell_faster::text, l.earn_more::text,
       l.flex_lowest_ask::text, l.last_sale::text, l.snapshot_time
FROM master_market_latest l
LEFT JOIN product_variants v USING (product_id, variant_id)
WHERE l.product_id = $1 AND l.currency_code = ANY($2::text[])
ORDER BY l.variant_id, l.currency_code
"""

# GetLatestPrices in one round trip: the product (by id or SKU) and its data version, and its
# latest prices only if that version is not the one the caller holds ($3, $4); otherwise one
# row with the product and NULL prices. Amounts come back as text (what the API answers),
# empty when unknown, and the snapshot time as microseconds since the epoch (no datetime, no
# Decimal per value).
_PRICES_UNLESS = """
WITH p AS ({product})
SELECT p.product_id, p.sku, p.title, p.brand, p.data_version, l.variant_id, l.variant_value,
       l.currency_code, l.lowest_ask, l.highest_bid, l.sell_faster, l.earn_more,
       l.flex_lowest_ask, l.last_sale, l.snapshot_us
FROM p
LEFT JOIN LATERAL (
    SELECT l.variant_id, coalesce(v.variant_value, '') AS variant_value, l.currency_code,
           coalesce(l.lowest_ask::text, '') AS lowest_ask,
           coalesce(l.highest_bid::text, '') AS highest_bid,
           coalesce(l.sell_faster::text, '') AS sell_faster,
           coalesce(l.earn_more::text, '') AS earn_more,
           coalesce(l.flex_lowest_ask::text, '') AS flex_lowest_ask,
           coalesce(l.last_sale::text, '') AS last_sale,
           (extract(epoch FROM l.snapshot_time) * 1000000)::bigint AS snapshot_us
    FROM master_market_latest l
    LEFT JOIN product_variants v
           ON v.product_id = p.product_id AND v.variant_id = l.variant_id
    WHERE l.product_id = p.product_id AND l.currency_code = ANY($2::text[])
      AND (p.product_id, p.data_version) IS DISTINCT FROM ($3::text, $4::bigint)
    ORDER BY l.variant_id, l.currency_code
    OFFSET 0  -- not flattened: the version test gates the scans (a one-time filter)
) l ON true
"""
_PRICES_BY_ID = _PRICES_UNLESS.format(
    product="SELECT product_id, sku, title, brand, data_version FROM products "
            "WHERE product_id = $1")
_PRICES_BY_SKU = _PRICES_UNLESS.format(
    product="SELECT product_id, sku, title, brand, data_version FROM products "
            "WHERE upper(sku) = upper($1) AND sku <> '' ORDER BY product_id LIMIT 1")

# One pass over the fresh latest rows with plain float aggregates (lowest and highest converted
# ask per variant; the float column spares a numeric conversion per row). The factors come as an
# array aligned with the currencies, in the caller's order, joined as a small table (a hash
# join of three rows): each row's factor is looked up once, where indexing the arrays in the
# expression repeated the lookup in every aggregate (~30% of the query). Only the top rows look
# up which regions those were, and their names. The spread is rounded per variant (not per
# row) before it is compared, see SPREAD_DECIMALS.
_ARBITRAGE = """
WITH rates AS (  -- a currency listed twice counts once, where it is first listed
    SELECT code, factor, position FROM (
        SELECT DISTINCT ON (code) code, factor, position
        FROM unnest($4::float8[], $5::text[]) WITH ORDINALITY AS r(factor, code, position)
        ORDER BY code, position
    ) first_listed
    WHERE factor IS NOT NULL
), variants AS (
    SELECT l.product_id, l.variant_id, min(l.lowest_ask_float * r.factor) AS low,
           max(l.lowest_ask_float * r.factor) AS high, min(l.snapshot_time) AS oldest
    FROM master_market_latest l JOIN rates r ON r.code = l.currency_code
    WHERE l.snapshot_time > $1 AND l.lowest_ask_float > 0
    GROUP BY l.product_id, l.variant_id
    HAVING count(*) >= 2
), top AS (
    SELECT * FROM (
        SELECT product_id, variant_id, low, high, oldest,
               round((high - low) / low * 100 * $6) / $6 AS spread  -- SPREAD_DECIMALS
        FROM variants
    ) rounded
    WHERE spread >= $2
    ORDER BY spread DESC, product_id, variant_id
    LIMIT $3
), priced AS (
    SELECT l.product_id, l.variant_id, l.currency_code, l.lowest_ask,
           l.lowest_ask_float * r.factor AS converted, r.position
    FROM top JOIN master_market_latest l USING (product_id, variant_id)
    JOIN rates r ON r.code = l.currency_code
    WHERE l.snapshot_time > $1 AND l.lowest_ask_float > 0
), buy AS (
    SELECT DISTINCT ON (product_id, variant_id) product_id, variant_id, currency_code, lowest_ask
    FROM priced
    ORDER BY product_id, variant_id, converted, position
), sell AS (
    SELECT DISTINCT ON (product_id, variant_id) product_id, variant_id, currency_code, lowest_ask
    FROM priced
    ORDER BY product_id, variant_id, converted DESC, position
)
SELECT top.product_id, top.variant_id, top.low AS buy_converted, top.high AS sell_converted,
       top.spread, top.oldest, buy.currency_code AS buy_currency, buy.lowest_ask AS buy_price,
       sell.currency_code AS sell_currency, sell.lowest_ask AS sell_price,
       coalesce(v.variant_value, '') AS variant_value, coalesce(p.sku, '') AS sku,
       coalesce(p.title, '') AS title, coalesce(p.brand, '') AS brand
FROM top
JOIN buy USING (product_id, variant_id)
JOIN sell USING (product_id, variant_id)
LEFT JOIN product_variants v ON v.product_id = top.product_id AND v.variant_id = top.variant_id
LEFT JOIN products p ON p.product_id = top.product_id
ORDER BY top.spread DESC, top.product_id, top.variant_id
"""


def _latest_row(record: asyncpg.Record) -> LatestRow:
    return LatestRow(*record)


class PricingStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    # -- snapshots -------------------------------------------------------------------------

    async def write_snapshots(self, rows: Sequence[SnapshotRow], job_id: str = "") -> WriteResult:
        """Appends ``rows`` to master_market_data (COPY) and brings master_market_latest up to
        date in the same transaction; a snapshot older than the stored latest changes nothing
        there."""
        if not rows:
            return WriteResult(0, 0, 0, 0)
        newest: dict[tuple[str, str, str], SnapshotRow] = {}
        for row in rows:
            kept = newest.get(row.key)
            if kept is None or kept.snapshot_time < row.snapshot_time:
                newest[row.key] = row
        latest = list(newest.values())
        columns: list[list[Any]] = [[] for _ in range(10)]
        for row in latest:
            for index, value in enumerate((
                row.product_id, row.variant_id, row.currency_code, row.lowest_ask,
                row.highest_bid, row.sell_faster, row.earn_more, row.flex_lowest_ask,
                row.last_sale, row.snapshot_time,
            )):
                columns[index].append(value)
        async with self.pool.acquire() as connection, connection.transaction():
            await connection.copy_records_to_table(
                "master_market_data", columns=SNAPSHOT_COLUMNS,
                records=[(r.product_id, r.variant_id, r.currency_code, r.lowest_ask,
                          r.highest_bid, r.sell_faster, r.earn_more, r.flex_lowest_ask,
                          r.last_sale, r.snapshot_time, job_id) for r in rows],
            )
            written = await connection.fetch(_UPSERT_LATEST, *columns)
        created = sum(1 for record in written if record["inserted"])
        return WriteResult(len(rows), created, len(written) - created, len(latest) - len(written))

    async def latest_prices_unless(
        self, *, product_id: str, sku: str, currencies: Sequence[str],
        held: tuple[str, int] | None,
    ) -> list[asyncpg.Record]:
        """A product by id (or else by SKU, case-insensitive) with its data version and, unless
        ``held`` (product id, data version) is still current, its latest prices, one round trip.
        Columns: product_id, sku, title, brand, data_version, then per price variant_id,
        variant_value, currency_code, six amounts as text ('' = none), snapshot_us (NULL in
        the one row answered when ``held`` is current or the product has no prices). No rows:
        no such product."""
        held_id, held_version = held if held is not None else (None, None)
        if product_id:
            return await self.pool.fetch(_PRICES_BY_ID, product_id, list(currencies), held_id,
                                         held_version)
        return await self.pool.fetch(_PRICES_BY_SKU, sku, list(currencies), held_id,
                                     held_version)

    async def latest_prices(self, product_id: str, currencies: Sequence[str]) -> list[LatestRow]:
        records = await self.pool.fetch(_LATEST_PRICES, product_id, list(currencies))
        return [_latest_row(record) for record in records]

    async def fresh_products(
        self, product_ids: Sequence[str], currencies: Sequence[str], fresh_after: datetime
    ) -> set[str]:
        """Of ``product_ids``, those whose newest snapshot in every currency is newer than
        ``fresh_after``."""
        if not product_ids:
            return set()
        records = await self.pool.fetch(
            """
            SELECT product_id FROM (
                SELECT product_id, currency_code FROM master_market_latest
                WHERE product_id = ANY($1::text[]) AND currency_code = ANY($2::text[])
                GROUP BY product_id, currency_code
                HAVING max(snapshot_time) > $3
            ) fresh
            GROUP BY product_id HAVING count(*) = cardinality($2::text[])
            """,
            list(product_ids), list(currencies), fresh_after,
        )
        return {record["product_id"] for record in records}

    async def prune_snapshots(self, older_than: datetime, batch: int = 10000) -> int:
        """Deletes raw snapshots older than ``older_than`` in batches (short locks)."""
        total = 0
        while True:
            status = await self.pool.execute(
                """
                DELETE FROM master_market_data WHERE id IN (
                    SELECT id FROM master_market_data WHERE snapshot_time < $1 LIMIT $2)
                """,
                older_than, batch,
            )
            deleted = int(status.split()[-1])
            total += deleted
            if deleted < batch:
                return total

    async def snapshot_count(self) -> int:
        return int(await self.pool.fetchval("SELECT count(*) FROM master_market_data"))

    # -- products --------------------------------------------------------------------------

    async def product(self, product_id: str = "", sku: str = "") -> ProductRow | None:
        """A product by id, or by SKU (case-insensitive); None if we have no data for it."""
        if product_id:
            record = await self.pool.fetchrow(
                "SELECT product_id, sku, title, brand FROM products WHERE product_id = $1",
                product_id,
            )
        else:
            record = await self.pool.fetchrow(
                "SELECT product_id, sku, title, brand FROM products WHERE upper(sku) = upper($1) "
                "AND sku <> '' ORDER BY product_id LIMIT 1",
                sku,
            )
        return ProductRow(**dict(record)) if record else None

    async def products_missing_catalog(self, product_ids: Sequence[str]) -> set[str]:
        records = await self.pool.fetch(
            """
            SELECT id FROM unnest($1::text[]) AS id
            WHERE NOT EXISTS (SELECT 1 FROM products p WHERE p.product_id = id
                              AND p.catalog_synced_at IS NOT NULL)
            """,
            list(product_ids),
        )
        return {record["id"] for record in records}

    async def save_catalog(
        self, product: ProductRow, variants: Iterable[tuple[str, str]]
    ) -> None:
        async with self.pool.acquire() as connection, connection.transaction():
            await connection.execute(
                """
                INSERT INTO products (product_id, sku, title, brand, catalog_synced_at)
                VALUES ($1, $2, $3, $4, now())
                ON CONFLICT (product_id) DO UPDATE SET sku = EXCLUDED.sku,
                    title = EXCLUDED.title, brand = EXCLUDED.brand, catalog_synced_at = now(),
                    data_version = nextval('price_data_version')
                """,
                product.product_id, product.sku, product.title, product.brand,
            )
            await connection.executemany(
                """
                INSERT INTO product_variants (product_id, variant_id, variant_value)
                VALUES ($1, $2, $3)
                ON CONFLICT (product_id, variant_id) DO UPDATE
                    SET variant_value = EXCLUDED.variant_value
                """,
                [(product.product_id, variant_id, value) for variant_id, value in variants],
            )

    # -- candidates ------------------------------------------------------------------------

    async def backlog(self) -> list[str]:
        records = await self.pool.fetch(
            "SELECT product_id FROM sync_backlog ORDER BY queued_at, product_id")
        return [record["product_id"] for record in records]

    async def portfolio_products(self) -> list[str]:
        """Products held in portfolios, the most widely held first."""
        records = await self.pool.fetch(
            """
            SELECT product_id FROM portfolio_items GROUP BY product_id
            ORDER BY count(DISTINCT user_email) DESC, min(added_at), product_id
            """)
        return [record["product_id"] for record in records]

    async def popular_products(self, min_views: int) -> list[str]:
        records = await self.pool.fetch(
            """
            SELECT product_id FROM product_views WHERE view_count >= $1
            ORDER BY view_count DESC, last_viewed_at DESC, product_id
            """,
            min_views,
        )
        return [record["product_id"] for record in records]

    async def recently_viewed(self, since: datetime) -> list[str]:
        records = await self.pool.fetch(
            """
            SELECT product_id FROM product_views WHERE last_viewed_at > $1
            ORDER BY last_viewed_at DESC, product_id
            """,
            since,
        )
        return [record["product_id"] for record in records]

    async def update_backlog(
        self, done: Sequence[str], unreached: Sequence[str], job_id: str
    ) -> None:
        """Removes ``done`` from the backlog and queues ``unreached`` (keeping their place)."""
        async with self.pool.acquire() as connection, connection.transaction():
            await connection.execute(
                "DELETE FROM sync_backlog WHERE product_id = ANY($1::text[])", list(done))
            # queued_at orders the backlog: one microsecond apart in the order given (the
            # clock alone can give rows written together the same time, and ties go by id)
            await connection.execute(
                """
                INSERT INTO sync_backlog (product_id, queued_at, sync_job_id)
                SELECT product_id, now() + position * interval '1 microsecond', $2
                FROM unnest($1::text[]) WITH ORDINALITY AS queued(product_id, position)
                ON CONFLICT (product_id) DO NOTHING
                """,
                list(unreached), job_id,
            )

    # -- views and portfolios --------------------------------------------------------------

    async def record_view(self, product_id: str, at: datetime) -> int:
        return int(await self.pool.fetchval(
            """
            INSERT INTO product_views AS v (product_id, view_count, last_viewed_at)
            VALUES ($1, 1, $2)
            ON CONFLICT (product_id) DO UPDATE SET view_count = v.view_count + 1,
                last_viewed_at = greatest(v.last_viewed_at, EXCLUDED.last_viewed_at)
            RETURNING view_count
            """,
            product_id, at,
        ))

    async def set_portfolio(
        self, email: str, items: Sequence[tuple[str, str, int]]
    ) -> list[tuple[str, str, int]]:
        """Replaces the portfolio with ``items`` (one per product and variant)."""
        async with self.pool.acquire() as connection, connection.transaction():
            await connection.execute("DELETE FROM portfolio_items WHERE user_email = $1", email)
            await self._add_items(connection, email, items)
            return await self._items(connection, email)

    async def add_portfolio_items(
        self, email: str, items: Sequence[tuple[str, str, int]], max_quantity: int
    ) -> list[tuple[str, str, int]]:
        """Adds ``items`` (one per product and variant) to the quantities held; the portfolio.
        Raises :class:`QuantityOverLimit` (nothing added) if a quantity would pass
        ``max_quantity``."""
        async with self.pool.acquire() as connection, connection.transaction():
            added = await self._add_items(connection, email, items, max_quantity)
            over = [(product_id, variant_id) for product_id, variant_id, _ in items
                    if (product_id, variant_id) not in added]
            if over:
                raise QuantityOverLimit(over)  # and the transaction rolls back
            return await self._items(connection, email)

    async def portfolio(self, email: str) -> list[tuple[str, str, int]]:
        async with self.pool.acquire() as connection:
            return await self._items(connection, email)

    @staticmethod
    async def _add_items(
        connection: asyncpg.Connection, email: str, items: Sequence[tuple[str, str, int]],
        max_quantity: int | None = None,
    ) -> set[tuple[str, str]]:
        """Inserts ``items`` or adds them to the quantities held, except where the sum would
        pass ``max_quantity`` (summed as bigint: a stored quantity may be near the integer
        column's limit); the keys written."""
        records = await connection.fetch(
            """
            INSERT INTO portfolio_items AS i (user_email, product_id, variant_id, quantity)
            SELECT $1, * FROM unnest($2::text[], $3::text[], $4::integer[])
            ON CONFLICT (user_email, product_id, variant_id)
                DO UPDATE SET quantity = i.quantity + EXCLUDED.quantity
                WHERE $5::bigint IS NULL OR i.quantity::bigint + EXCLUDED.quantity <= $5
            RETURNING product_id, variant_id
            """,
            email, [item[0] for item in items], [item[1] for item in items],
            [item[2] for item in items], max_quantity,
        )
        return {(record["product_id"], record["variant_id"]) for record in records}

    @staticmethod
    async def _items(connection: asyncpg.Connection, email: str) -> list[tuple[str, str, int]]:
        records = await connection.fetch(
            """
            SELECT product_id, variant_id, quantity FROM portfolio_items WHERE user_email = $1
            ORDER BY added_at, product_id, variant_id
            """,
            email,
        )
        return [(r["product_id"], r["variant_id"], r["quantity"]) for r in records]

    # -- FX and comparisons ----------------------------------------------------------------

    async def set_fx_rates(
        self, units_per_usd: dict[str, Decimal], as_of: datetime
    ) -> list[str]:
        """Stores rates unless a rate with a later as-of is stored; the currencies changed."""
        records = await self.pool.fetch(
            """
            INSERT INTO fx_rates AS f (currency_code, units_per_usd, as_of)
            SELECT * FROM unnest($1::text[], $2::numeric[], $3::timestamptz[])
            ON CONFLICT (currency_code) DO UPDATE SET units_per_usd = EXCLUDED.units_per_usd,
                as_of = EXCLUDED.as_of, updated_at = now()
            WHERE f.as_of <= EXCLUDED.as_of
            RETURNING currency_code
            """,
            list(units_per_usd), list(units_per_usd.values()), [as_of] * len(units_per_usd),
        )
        return sorted(record["currency_code"] for record in records)

    async def fx_rates(self) -> dict[str, tuple[Decimal, datetime]]:
        records = await self.pool.fetch("SELECT currency_code, units_per_usd, as_of FROM fx_rates")
        return {r["currency_code"]: (r["units_per_usd"], r["as_of"]) for r in records}

    async def arbitrage(
        self, *, fresh_after: datetime, min_spread: float, limit: int,
        factors: Sequence[float | None], currencies: Sequence[str],
    ) -> list[ArbitrageRow]:
        """Variants whose converted lowest asks differ by at least ``min_spread`` percent;
        ``factors[i]`` converts an amount in ``currencies[i]`` to the base currency (None: no
        rate, that region is left out)."""
        records = await self.pool.fetch(
            _ARBITRAGE, fresh_after, min_spread, limit, list(factors), list(currencies),
            10.0 ** SPREAD_DECIMALS)
        return [
            ArbitrageRow(
                product=ProductRow(r["product_id"], r["sku"], r["title"], r["brand"]),
                variant_id=r["variant_id"], variant_value=r["variant_value"],
                buy_currency=r["buy_currency"], buy_price=r["buy_price"],
                buy_converted=r["buy_converted"], sell_currency=r["sell_currency"],
                sell_price=r["sell_price"], sell_converted=r["sell_converted"],
                spread_percent=r["spread"], snapshot_time=r["oldest"],
            )
            for r in records
        ]

    async def freshness(
        self, fresh_after: datetime, since: datetime, currencies: Sequence[str]
    ) -> list[FreshnessRow]:
        """Per currency: fresh products, products, snapshots since ``since``, average age."""
        records = await self.pool.fetch(
            """
            WITH latest AS (
                SELECT currency_code,
                       count(DISTINCT product_id) FILTER (WHERE snapshot_time > $1) AS fresh,
                       count(DISTINCT product_id) AS products,
                       avg(extract(epoch FROM now() - snapshot_time)) / 3600 AS age_hours,
                       max(snapshot_time) AS newest
                FROM master_market_latest WHERE currency_code = ANY($3::text[])
                GROUP BY currency_code
            ), raw AS (
                SELECT currency_code, count(*) AS snapshots FROM master_market_data
                WHERE snapshot_time > $2 AND currency_code = ANY($3::text[])
                GROUP BY currency_code
            )
            SELECT c AS currency_code, coalesce(latest.fresh, 0) AS fresh,
                   coalesce(latest.products, 0) AS products,
                   coalesce(raw.snapshots, 0) AS snapshots,
                   coalesce(latest.age_hours, 0)::float8 AS age_hours, latest.newest
            FROM unnest($3::text[]) WITH ORDINALITY AS wanted(c, position)
            LEFT JOIN latest ON latest.currency_code = c
            LEFT JOIN raw ON raw.currency_code = c
            ORDER BY position
            """,
            fresh_after, since, list(currencies),
        )
        return [
            FreshnessRow(r["currency_code"], r["fresh"], r["products"], r["snapshots"],
                         r["age_hours"], r["newest"])
            for r in records
        ]
