"""Deterministic fake business data for sandboxes.

Every value comes from a :class:`random.Random` the caller passes in, usually
``rng_for(seed, "customer", record_id)``: the same seed and keys give the same record in any
process (hashlib, not ``hash()``), whatever order records are generated in.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import NamedTuple, TypeVar

__all__ = [
    "City",
    "city",
    "company_name",
    "date_between",
    "email",
    "first_name",
    "industry",
    "last_name",
    "mutation_round",
    "phone",
    "price",
    "product_name",
    "rng_for",
    "sku",
    "stable_hash",
]

K = TypeVar("K")


class City(NamedTuple):
    name: str
    country: str
    country_code: str


_FIRST = (
    "Ada Alan Alice Amara Ana Ben Carla Chen Diego Elena Emma Farah Felix Grace Hana Ivan Jonas "
    "Julia Kai Lara Leo Lina Luca Maya Mia Noah Nora Omar Paula Priya Rosa Sam Sara Tariq Theo "
    "Uma Vera Wei Yara Zoe"
).split()
_LAST = (
    "Andersen Baker Costa Dubois Evans Fischer Garcia Hansen Ito Jensen Kowalski Larsen Martin "
    "Meyer Nakamura Novak Okafor Olsen Patel Petrov Quinn Rossi Santos Schmidt Silva Tanaka "
    "Torres Varga Wagner Weber Wilson Young Zhang Zimmermann"
).split()
_COMPANY_HEAD = (
    "Acme Apex Atlas Blue Bright Cedar Copper Delta Eagle Evergreen Falcon Granite Harbor "
    "Horizon Iron Juniper Keystone Lakeside Maple Meridian Nimbus North Oak Orbit Pioneer Pine "
    "Quantum Redwood Silver Summit Sun Vertex Willow"
).split()
_COMPANY_TAIL = (
    "Analytics Brands Builders Capital Consulting Designs Dynamics Foods Goods Health Holdings "
    "Industries Labs Logistics Media Motors Outfitters Partners Retail Supply Systems Textiles "
    "Trading Ventures Works"
).split()
_LEGAL = ("Inc.", "LLC", "Ltd", "GmbH", "S.A.", "Co.", "Group", "AG")
_INDUSTRIES = (
    "Apparel",
    "Automotive",
    "Construction",
    "Consumer Electronics",
    "Education",
    "Energy",
    "Financial Services",
    "Food & Beverage",
    "Healthcare",
    "Hospitality",
    "Logistics",
    "Manufacturing",
    "Media",
    "Professional Services",
    "Real Estate",
    "Retail",
    "Software",
    "Sporting Goods",
    "Telecommunications",
    "Wholesale",
)
_CITIES = (
    City("New York", "United States", "US"),
    City("San Francisco", "United States", "US"),
    City("Chicago", "United States", "US"),
    City("Austin", "United States", "US"),
    City("Toronto", "Canada", "CA"),
    City("Vancouver", "Canada", "CA"),
    City("Mexico City", "Mexico", "MX"),
    City("São Paulo", "Brazil", "BR"),
    City("London", "United Kingdom", "GB"),
    City("Manchester", "United Kingdom", "GB"),
    City("Dublin", "Ireland", "IE"),
    City("Paris", "France", "FR"),
    City("Lyon", "France", "FR"),
    City("Berlin", "Germany", "DE"),
    City("Munich", "Germany", "DE"),
    City("Zurich", "Switzerland", "CH"),
    City("Amsterdam", "Netherlands", "NL"),
    City("Madrid", "Spain", "ES"),
    City("Milan", "Italy", "IT"),
    City("Stockholm", "Sweden", "SE"),
    City("Warsaw", "Poland", "PL"),
    City("Tokyo", "Japan", "JP"),
    City("Osaka", "Japan", "JP"),
    City("Singapore", "Singapore", "SG"),
    City("Sydney", "Australia", "AU"),
    City("Melbourne", "Australia", "AU"),
    City("Mumbai", "India", "IN"),
    City("Dubai", "United Arab Emirates", "AE"),
    City("Cape Town", "South Africa", "ZA"),
    City("Seoul", "South Korea", "KR"),
)
_PRODUCT_ADJECTIVE = (
    "Classic Compact Deluxe Eco Essential Heavy-Duty Lightweight Modern Premium Pro Retro Slim "
    "Smart Sport Ultra Vintage Wireless"
).split()
_PRODUCT_MATERIAL = "Bamboo Canvas Carbon Ceramic Cotton Leather Mesh Steel Suede Wool".split()
_PRODUCT_NOUN = (
    "Backpack Bottle Boot Cap Chair Desk Headphones Hoodie Jacket Keyboard Lamp Mug Runner "
    "Sandal Scarf Sneaker Speaker Tee Tote Watch"
).split()


def stable_hash(*parts: object) -> int:
    """A 64-bit hash of ``parts`` by their text, identical in every process."""
    text = "\x1f".join(str(part) for part in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def rng_for(seed: int | str, *keys: object) -> random.Random:
    """A generator for one seed and record, e.g. ``rng_for(42, "customer", 17)``."""
    return random.Random(stable_hash(seed, *keys))


def first_name(rng: random.Random) -> str:
    return rng.choice(_FIRST)


def last_name(rng: random.Random) -> str:
    return rng.choice(_LAST)


def company_name(rng: random.Random) -> str:
    return f"{rng.choice(_COMPANY_HEAD)} {rng.choice(_COMPANY_TAIL)} {rng.choice(_LEGAL)}"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "", text.lower())


def email(rng: random.Random, first: str, last: str, domain: str | None = None) -> str:
    """``first.last@domain``; a made-up ``.example`` domain when none is given."""
    if domain is None:
        domain = f"{_slug(rng.choice(_COMPANY_HEAD))}{_slug(rng.choice(_COMPANY_TAIL))}.example"
    return f"{_slug(first)}.{_slug(last)}@{domain}"


def phone(rng: random.Random) -> str:
    """A North American number in the fictional 555-01xx range."""
    return f"+1-{rng.randint(201, 989)}-555-01{rng.randint(0, 99):02d}"


def city(rng: random.Random) -> City:
    return rng.choice(_CITIES)


def industry(rng: random.Random) -> str:
    return rng.choice(_INDUSTRIES)


def product_name(rng: random.Random) -> str:
    words = (_PRODUCT_ADJECTIVE, _PRODUCT_MATERIAL, _PRODUCT_NOUN)
    return " ".join(rng.choice(choices) for choices in words)


def sku(rng: random.Random, prefix: str = "") -> str:
    letters = "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ") for _ in range(3))
    return f"{prefix}{letters}-{rng.randint(0, 99999):05d}"


def date_between(rng: random.Random, start: datetime, end: datetime) -> datetime:
    """A whole-second moment in ``[start, end]`` (keeps ``start``'s time zone)."""
    span = int((end - start).total_seconds())
    return start + timedelta(seconds=rng.randint(0, max(span, 0)))


def price(
    rng: random.Random, low: Decimal | str = "1.00", high: Decimal | str = "500.00"
) -> Decimal:
    """A price in ``[low, high]`` with two decimal places."""
    cents = rng.randint(int(Decimal(low) * 100), int(Decimal(high) * 100))
    return Decimal(cents) / 100


def mutation_round(ids: Iterable[K], share: float, round_no: int, seed: int | str) -> list[K]:
    """The ids that change in mutation round ``round_no``: ``round(len * share)`` of them.

    Same arguments, same ids (in input order); each round picks an independent set, so a
    sandbox can apply rounds 1..N to simulate edits between delta syncs.
    """
    pool: Sequence[K] = list(ids)
    if not 0.0 <= share <= 1.0:
        raise ValueError("share must be within [0, 1]")
    count = round(len(pool) * share)
    ranked = sorted(pool, key=lambda i: stable_hash(seed, "mutation", round_no, i))
    chosen = set(ranked[:count])
    return [i for i in pool if i in chosen]
