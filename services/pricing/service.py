"""PricingService RPC handlers: validate, ask the store, shape the answer (no StockX calls)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from syncsuite.pricing.v1 import pricing_service_pb2 as pb
from syncsuite.pricing.v1 import pricing_service_pb2_grpc

from services.pricing.settings import STOCKX_CURRENCIES, PricingSettings
from services.pricing.store import SPREAD_DECIMALS, PricingStore, ProductRow, QuantityOverLimit
from shared.auth import current_principal
from shared.errors import FailedPrecondition, InvalidArgument, NotFound, Unauthenticated
from shared.readcache import UNCHANGED, Unchanged, Versioned, VersionedReadCache
from shared.timestamps import from_timestamp, timestamp, utcnow
from shared.wire import (
    FIXED64,
    LENGTH_DELIMITED,
    encode_double,
    field_key,
    length_delimited,
    varint,
)

__all__ = ["PricingServicer"]

_PRODUCT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")
MAX_PORTFOLIO_ITEMS = 1000
MAX_QUANTITY = 1_000_000  # of one product (or variant) in one portfolio, also once added up
# FX rates (units per 1 base currency) outside this range are typing errors, and a value like
# 1e999999 is more than the database's numeric holds.
MIN_FX_RATE, MAX_FX_RATE = Decimal("1e-9"), Decimal("1e9")
MAX_FX_RATE_DIGITS = 30
ARBITRAGE_DEFAULT_LIMIT = 50
ARBITRAGE_MAX_LIMIT = 1000
CENT = Decimal("0.01")
SPREAD_STEP = Decimal(1).scaleb(-SPREAD_DECIMALS)
# GetLatestPrices answers kept per replica (product × currencies asked), answered from memory
# until the invalidation feed names the product (or checked against its data version on every
# read while the feed is down); ~5 KB each for 20 variants in 3 regions.
LATEST_CACHE_ENTRIES = 4096


def _text(amount: Decimal | str | None) -> str:
    return "" if amount is None else str(amount)


def _decimal(amount: str | None) -> Decimal | None:
    return None if amount is None else Decimal(amount)


def _money(value: Decimal | float | None) -> str:
    if value is None:
        return ""
    return str(Decimal(str(value)).quantize(CENT))


def _product_id(field: str, value: str) -> str:
    value = value.strip()
    if not value:
        raise InvalidArgument(field, "is required")
    if not _PRODUCT_ID.match(value):
        raise InvalidArgument(field, "must be a StockX product id (letters, digits, '-', "
                                     "at most 100 characters)")
    return value


def _no_prices(product_id: str, sku: str, currencies: Sequence[str]) -> NotFound:
    named = f"product {product_id!r}" if product_id else f"SKU {sku!r}"
    return NotFound(f"no prices for {named} in {', '.join(currencies)}")


def _spread_percent(low: Decimal, high: Decimal) -> float:
    """(high − low) / low × 100, rounded as ListArbitrageOpportunities rounds it before it
    compares (store.SPREAD_DECIMALS), so that both RPCs agree at the threshold."""
    return float(((high - low) / low * 100).quantize(SPREAD_STEP, rounding=ROUND_HALF_EVEN))


def _product_pb(product: ProductRow) -> pb.Product:
    return pb.Product(product_id=product.product_id, sku=product.sku, title=product.title,
                      brand=product.brand)


# VariantPrice.age_seconds (a double): appended per call to each price kept serialized
_AGE_KEY = field_key(pb.VariantPrice.DESCRIPTOR.fields_by_name["age_seconds"].number, FIXED64)
_AGE_BYTES = len(_AGE_KEY) + 8
_PRICES_FIELD = pb.GetLatestPricesResponse.DESCRIPTOR.fields_by_name["prices"].number
_PRODUCT_FIELD = pb.GetLatestPricesResponse.DESCRIPTOR.fields_by_name["product"].number


@dataclass(frozen=True, slots=True)
class LatestPricesAnswer:
    """A GetLatestPricesResponse kept serialized (see shared/wire.py) but for the ages, which change
    with the clock: the product field, then per price its field's key and length, the price
    without its age and the age's key, so that a call appends each age's 8 bytes."""

    product: bytes
    price_heads: tuple[bytes, ...]
    snapshot_seconds: tuple[float, ...]  # each price's snapshot time, seconds since the epoch

    @classmethod
    def of(cls, product: pb.Product, prices: Sequence[pb.VariantPrice],
           snapshot_seconds: Sequence[float]) -> LatestPricesAnswer:
        heads = []
        for price in prices:
            body = price.SerializeToString()  # without age_seconds (0: not written)
            heads.append(field_key(_PRICES_FIELD, LENGTH_DELIMITED)
                         + varint(len(body) + _AGE_BYTES) + body + _AGE_KEY)
        return cls(length_delimited(_PRODUCT_FIELD, product.SerializeToString()),
                   tuple(heads), tuple(snapshot_seconds))

    def encode(self, now_seconds: float) -> bytes:
        """The serialized GetLatestPricesResponse with each price's age as of ``now_seconds``."""
        parts = [self.product]
        ages: dict[float, bytes] = {}  # a product's prices share a few snapshot times
        for head, taken in zip(self.price_heads, self.snapshot_seconds, strict=True):
            age = ages.get(taken)
            if age is None:
                age = ages[taken] = encode_double(max(0.0, now_seconds - taken))
            parts.append(head)
            parts.append(age)
        return b"".join(parts)


def _latest_answer(records: Sequence[Any]) -> LatestPricesAnswer:
    """The answer from :meth:`PricingStore.latest_prices_unless` rows (positional columns)."""
    first = records[0]
    product_id = first[0]
    prices, seconds = [], []
    if first[5] is not None:
        price, stamp = pb.VariantPrice, Timestamp
        for (_, _, _, _, _, variant_id, variant_value, currency, lowest_ask, highest_bid,
             sell_faster, earn_more, flex_lowest_ask, last_sale, micros) in records:
            whole, fraction = divmod(micros, 1_000_000)
            prices.append(price(
                product_id=product_id, variant_id=variant_id, variant_value=variant_value,
                currency_code=currency, lowest_ask=lowest_ask, highest_bid=highest_bid,
                last_sale=last_sale, sell_faster=sell_faster, earn_more=earn_more,
                flex_lowest_ask=flex_lowest_ask,
                snapshot_time=stamp(seconds=whole, nanos=fraction * 1000),
            ))
            seconds.append(micros / 1_000_000)
    product = pb.Product(product_id=product_id, sku=first[1], title=first[2], brand=first[3])
    return LatestPricesAnswer.of(product, prices, seconds)


class PricingServicer(pricing_service_pb2_grpc.PricingServiceServicer):
    def __init__(
        self, store: PricingStore, settings: PricingSettings,
        now: Callable[[], datetime] = utcnow,
        *, on_cache_event: Callable[[str], object] | None = None,
    ) -> None:
        self._store = store
        self._settings = settings
        self._now = now
        self.latest_cache: VersionedReadCache[tuple[str, str, tuple[str, ...]],
                                              LatestPricesAnswer] = VersionedReadCache(
            max_entries=LATEST_CACHE_ENTRIES, on_event=on_cache_event)

    # -- validation helpers

    def _region(self, field: str, value: str) -> str:
        code = value.strip().upper()
        if code not in STOCKX_CURRENCIES:
            raise InvalidArgument(field, f"{value!r} is not a StockX currency code")
        if code not in self._settings.regions:
            raise InvalidArgument(
                field, f"{code} is not synced; regions: {', '.join(self._settings.regions)}")
        return code

    def _regions(self, field: str, values: Sequence[str]) -> list[str]:
        if not values:
            return list(self._settings.regions)
        return list(dict.fromkeys(self._region(field, value) for value in values))

    @staticmethod
    def _currency(field: str, value: str, default: str = "USD") -> str:
        code = (value.strip() or default).upper()
        if code not in STOCKX_CURRENCIES:
            raise InvalidArgument(field, f"{value!r} is not a StockX currency code")
        return code

    async def _find_product(self, product_id: str, sku: str) -> ProductRow:
        if product_id.strip():
            product = await self._store.product(product_id=_product_id("product_id", product_id))
            if product is None:
                raise NotFound(f"no prices for product {product_id.strip()!r}")
            return product
        if not sku.strip():
            raise InvalidArgument("sku", "must not be empty (or give product_id)")
        if len(sku) > 100:
            raise InvalidArgument("sku", "must be at most 100 characters")
        product = await self._store.product(sku=sku.strip())
        if product is None:
            raise NotFound(f"no prices for SKU {sku.strip()!r}")
        return product

    def _fresh_after(self) -> datetime:
        return self._now() - timedelta(hours=self._settings.staleness_hours)

    async def _base_units_per_usd(self, base: str) -> tuple[Decimal, dict[str, Any]]:
        rates = await self._store.fx_rates()
        if base == "USD":
            return rates.get("USD", (Decimal(1), None))[0], rates
        if base not in rates:
            raise FailedPrecondition(f"no FX rate stored for {base}; set one with SetFxRates")
        return rates[base][0], rates

    # -- RPCs

    def _product_key(self, product_id: str, sku: str) -> tuple[str, str]:
        """(product id, '') or ('', SKU), validated like :meth:`_find_product`."""
        if product_id.strip():
            return _product_id("product_id", product_id), ""
        if not sku.strip():
            raise InvalidArgument("sku", "must not be empty (or give product_id)")
        if len(sku) > 100:
            raise InvalidArgument("sku", "must be at most 100 characters")
        return "", sku.strip()

    async def GetLatestPrices(self, request: pb.GetLatestPricesRequest, context: Any) -> bytes:
        """The serialized GetLatestPricesResponse (shared/wire.py): hot, it is kept serialized
        but for the ages."""
        currencies = self._regions("currency_codes", request.currency_codes)
        product_id, sku = self._product_key(request.product_id, request.sku)

        async def load(held: Versioned[LatestPricesAnswer] | None
                       ) -> Versioned[LatestPricesAnswer] | Unchanged:
            known = held.version if held is not None else None
            records = await self._store.latest_prices_unless(
                product_id=product_id, sku=sku, currencies=currencies,
                held=known)  # type: ignore[arg-type]
            if not records:
                raise _no_prices(product_id, sku, currencies)
            version = (records[0][0], records[0][4])
            if version == known:
                return UNCHANGED
            if records[0][5] is None:  # the product is known, but not its prices
                raise _no_prices(product_id, sku, currencies)
            tags = (records[0][0], f"sku:{sku.upper()}") if sku else (records[0][0],)
            return Versioned(version, _latest_answer(records), tags)

        key = (product_id, sku.upper(), tuple(currencies))
        answer = await self.latest_cache.get(key, load)
        return answer.encode(self._now().timestamp())

    async def ComparePrices(
        self, request: pb.ComparePricesRequest, context: Any
    ) -> pb.ComparePricesResponse:
        base = self._currency("base_currency", request.base_currency)
        product = await self._find_product(request.product_id, request.sku)
        rows = await self._store.latest_prices(product.product_id, self._settings.regions)
        if not rows:
            raise _no_prices(product.product_id, "", self._settings.regions)
        base_units, rates = await self._base_units_per_usd(base)
        without_rate = sorted({row.currency_code for row in rows
                               if row.currency_code not in rates and row.currency_code != "USD"})
        used_as_of = [rates[code][1] for code in {row.currency_code for row in rows} | {base}
                      if code in rates]

        def convert(text: str | None, currency: str) -> Decimal | None:
            amount = _decimal(text)
            if amount is None:
                return None
            if currency in rates:
                units = rates[currency][0]
            elif currency == "USD":
                units = Decimal(1)
            else:
                return None
            return amount / units * base_units

        variants: dict[str, pb.VariantComparison] = {}
        asks: dict[str, list[tuple[Decimal, str]]] = {}
        for row in rows:
            variant = variants.get(row.variant_id)
            if variant is None:
                variant = variants[row.variant_id] = pb.VariantComparison(
                    variant_id=row.variant_id, variant_value=row.variant_value)
            ask = convert(row.lowest_ask, row.currency_code)
            variant.regions.append(pb.RegionPrice(
                currency_code=row.currency_code, lowest_ask=_text(row.lowest_ask),
                highest_bid=_text(row.highest_bid), lowest_ask_converted=_money(ask),
                highest_bid_converted=_money(convert(row.highest_bid, row.currency_code)),
                snapshot_time=timestamp(row.snapshot_time),
            ))
            if ask is not None and ask > 0:
                asks.setdefault(row.variant_id, []).append((ask, row.currency_code))
        for variant_id, found in asks.items():
            if len(found) >= 2:
                low, high = min(found), max(found)
                variant = variants[variant_id]
                variant.cheapest_currency, variant.dearest_currency = low[1], high[1]
                variant.spread_percent = _spread_percent(low[0], high[0])
        response = pb.ComparePricesResponse(
            product=_product_pb(product), base_currency=base, variants=list(variants.values()),
            currencies_without_rate=without_rate,
        )
        if used_as_of:
            response.fx_as_of.CopyFrom(timestamp(min(used_as_of)))
        return response

    async def ListArbitrageOpportunities(
        self, request: pb.ListArbitrageOpportunitiesRequest, context: Any
    ) -> pb.ListArbitrageOpportunitiesResponse:
        spread = request.min_spread_percent
        if math.isnan(spread) or spread < 0:
            raise InvalidArgument("min_spread_percent", "must be a number >= 0")
        if request.limit < 0:
            raise InvalidArgument("limit", f"must be between 0 and {ARBITRAGE_MAX_LIMIT}")
        limit = min(request.limit or ARBITRAGE_DEFAULT_LIMIT, ARBITRAGE_MAX_LIMIT)
        base = self._currency("base_currency", request.base_currency)
        base_units, rates = await self._base_units_per_usd(base)
        regions = self._settings.regions
        factors: list[float | None] = []
        for code in regions:
            units = rates[code][0] if code in rates else (Decimal(1) if code == "USD" else None)
            factors.append(None if units is None else float(base_units) / float(units))
        rows = await self._store.arbitrage(
            fresh_after=self._fresh_after(), min_spread=spread, limit=limit, factors=factors,
            currencies=regions,
        )
        return pb.ListArbitrageOpportunitiesResponse(
            base_currency=base,
            opportunities=[
                pb.ArbitrageOpportunity(
                    product=_product_pb(row.product), variant_id=row.variant_id,
                    variant_value=row.variant_value, buy_currency=row.buy_currency,
                    buy_price=_text(row.buy_price), sell_currency=row.sell_currency,
                    sell_price=_text(row.sell_price),
                    buy_price_converted=_money(row.buy_converted),
                    sell_price_converted=_money(row.sell_converted),
                    spread_percent=round(row.spread_percent, 4),
                    snapshot_time=timestamp(row.snapshot_time),
                )
                for row in rows
            ],
        )

    async def GetFreshness(
        self, request: pb.GetFreshnessRequest, context: Any
    ) -> pb.GetFreshnessResponse:
        now = self._now()
        rows = await self._store.freshness(
            self._fresh_after(), now - timedelta(hours=24), self._settings.regions)
        return pb.GetFreshnessResponse(
            staleness_threshold_hours=self._settings.staleness_hours,
            currencies=[
                pb.CurrencyFreshness(
                    currency_code=row.currency_code, fresh_products=row.fresh_products,
                    products=row.products, snapshots=row.snapshots,
                    average_age_hours=round(row.average_age_hours, 4),
                    newest_snapshot_time=timestamp(row.newest),
                )
                for row in rows
            ],
        )

    async def RecordProductView(
        self, request: pb.RecordProductViewRequest, context: Any
    ) -> pb.RecordProductViewResponse:
        product_id = _product_id("product_id", request.product_id)
        count = await self._store.record_view(product_id, self._now())
        return pb.RecordProductViewResponse(view_count=count)

    # -- portfolios

    @staticmethod
    def _user() -> str:
        email = current_principal.get().email
        if not email:
            raise Unauthenticated("a user token is needed")
        return email

    @staticmethod
    def _items(items: Sequence[pb.PortfolioItem], *, allow_empty: bool) -> list[
            tuple[str, str, int]]:
        if not items and not allow_empty:
            raise InvalidArgument("items", "must not be empty")
        if len(items) > MAX_PORTFOLIO_ITEMS:
            raise InvalidArgument("items", f"at most {MAX_PORTFOLIO_ITEMS} items")
        merged: dict[tuple[str, str], int] = {}
        for index, item in enumerate(items):
            product_id = _product_id(f"items[{index}].product_id", item.product_id)
            variant_id = item.variant_id.strip()
            if variant_id and not _PRODUCT_ID.match(variant_id):
                raise InvalidArgument(f"items[{index}].variant_id", "is not a StockX variant id")
            if not 0 <= item.quantity <= MAX_QUANTITY:
                raise InvalidArgument(f"items[{index}].quantity",
                                      f"must be between 0 and {MAX_QUANTITY}")
            key = (product_id, variant_id)
            merged[key] = merged.get(key, 0) + (item.quantity or 1)
            if merged[key] > MAX_QUANTITY:
                raise InvalidArgument(f"items[{index}].quantity", "the items of this product "
                                      f"add up to {merged[key]}; at most {MAX_QUANTITY}")
        return [(product_id, variant_id, quantity)
                for (product_id, variant_id), quantity in merged.items()]

    @staticmethod
    def _items_pb(items: Sequence[tuple[str, str, int]]) -> list[pb.PortfolioItem]:
        return [pb.PortfolioItem(product_id=p, variant_id=v, quantity=q) for p, v, q in items]

    async def SetPortfolio(
        self, request: pb.SetPortfolioRequest, context: Any
    ) -> pb.SetPortfolioResponse:
        items = self._items(request.items, allow_empty=True)
        stored = await self._store.set_portfolio(self._user(), items)
        return pb.SetPortfolioResponse(items=self._items_pb(stored))

    async def AddPortfolioItems(
        self, request: pb.AddPortfolioItemsRequest, context: Any
    ) -> pb.AddPortfolioItemsResponse:
        items = self._items(request.items, allow_empty=False)
        try:
            stored = await self._store.add_portfolio_items(self._user(), items, MAX_QUANTITY)
        except QuantityOverLimit as over:
            index = next(i for i, item in enumerate(request.items)
                         if (item.product_id.strip(), item.variant_id.strip()) == over.keys[0])
            raise InvalidArgument(f"items[{index}].quantity", "with the quantity already held "
                                  f"this would be more than {MAX_QUANTITY}") from None
        return pb.AddPortfolioItemsResponse(items=self._items_pb(stored))

    async def GetPortfolio(
        self, request: pb.GetPortfolioRequest, context: Any
    ) -> pb.GetPortfolioResponse:
        return pb.GetPortfolioResponse(
            items=self._items_pb(await self._store.portfolio(self._user())))

    # -- FX

    @staticmethod
    def _fx_rate(field: str, text: str) -> Decimal:
        try:
            value = Decimal(text.strip())
        except InvalidOperation:
            raise InvalidArgument(field, "must be a decimal number") from None
        if not value.is_finite() or value <= 0:
            raise InvalidArgument(field, "must be greater than 0")
        if not MIN_FX_RATE <= value <= MAX_FX_RATE:
            raise InvalidArgument(field, f"must be between {MIN_FX_RATE:f} and {MAX_FX_RATE:f}")
        if len(value.as_tuple().digits) > MAX_FX_RATE_DIGITS:
            raise InvalidArgument(field, f"must have at most {MAX_FX_RATE_DIGITS} digits")
        return value

    async def SetFxRates(
        self, request: pb.SetFxRatesRequest, context: Any
    ) -> pb.SetFxRatesResponse:
        base = self._currency("base_currency", request.base_currency)
        if not request.rates:
            raise InvalidArgument("rates", "must not be empty")
        given: dict[str, Decimal] = {}
        for index, rate in enumerate(request.rates):
            code = self._currency(f"rates[{index}].currency_code", rate.currency_code or "?")
            given[code] = self._fx_rate(f"rates[{index}].rate", rate.rate)
        now = self._now()
        as_of = from_timestamp(request.as_of) if request.HasField("as_of") else now
        if as_of > now + timedelta(minutes=5):
            raise InvalidArgument("as_of", "must not be in the future")
        if base == "USD":
            units_per_usd = {code: value for code, value in given.items()}
        else:
            if "USD" not in given:
                raise InvalidArgument("rates", "must include USD when base_currency is not USD")
            usd_per_base = given["USD"]
            units_per_usd = {code: value / usd_per_base for code, value in given.items()}
            units_per_usd[base] = Decimal(1) / usd_per_base
        units_per_usd["USD"] = Decimal(1)
        updated = await self._store.set_fx_rates(units_per_usd, as_of)
        return pb.SetFxRatesResponse(updated_currencies=updated)
