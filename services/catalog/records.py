"""Customers and items as the catalog holds them, and how NetSuite rows become them.

A record is a plain dict keyed by :data:`CUSTOMER_FIELDS` / :data:`ITEM_FIELDS`: ``netsuite_id``
is an int, booleans are bools, moments are ISO-8601 UTC strings (``2024-01-31T12:00:00Z``), the
rest text ("" when NetSuite sent nothing). Rows NetSuite sends (SuiteQL lower-case columns,
booleans as "T"/"F", moments in the account's time zone without an offset) go through
:func:`parse_row`, which either gives a record or says why the row is invalid.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

__all__ = [
    "CUSTOMERS",
    "CUSTOMER_FIELDS",
    "ENTITIES",
    "ITEMS",
    "ITEM_FIELDS",
    "ITEM_TYPES",
    "EntitySpec",
    "ParsedRow",
    "Record",
    "content_hash",
    "netsuite_id",
    "parse_row",
    "utc_moment",
]

Record = dict[str, Any]

CUSTOMER_FIELDS: tuple[str, ...] = (
    "netsuite_id", "entity_id", "company_name", "is_person", "first_name", "last_name",
    "email", "phone", "subsidiary", "address", "city", "country", "industry", "is_inactive",
    "date_created", "last_modified",
)
ITEM_FIELDS: tuple[str, ...] = (
    "netsuite_id", "item_id", "display_name", "item_type", "base_price", "is_inactive",
    "last_modified",
)
ITEM_TYPES = frozenset({
    "Assembly", "Description", "Discount", "InvtPart", "Kit", "Markup", "NonInvtPart",
    "OthCharge", "Payment", "Service", "Subtotal",
})
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# What PostgreSQL can hold: ids are bigint, prices numeric(14, 2), text UTF-8 without NUL.
_MAX_ID = 2**63 - 1
_PRICE_LIMIT = Decimal(10) ** 12
_CENTS = Decimal("0.01")
_SURROGATE = re.compile("[\ud800-\udfff]")  # a lone half of a UTF-16 pair: not UTF-8


@dataclass(frozen=True)
class EntitySpec:
    """What differs between customers and items."""

    name: str  # "customers" | "items"
    record_type: str  # NetSuite record / SuiteQL table: "customer" | "item"
    fields: tuple[str, ...]
    # SuiteQL columns fetched, in order (lower-case, as NetSuite answers).
    columns: tuple[str, ...]
    # Fields searched (prefix and substring), and the field results are ordered by.
    search_fields: tuple[str, ...]
    sort_field: str


CUSTOMERS = EntitySpec(
    "customers", "customer", CUSTOMER_FIELDS,
    ("id", "entityid", "companyname", "isperson", "firstname", "lastname", "email", "phone",
     "subsidiary", "address", "city", "country", "industry", "isinactive", "datecreated",
     "lastmodifieddate"),
    ("company_name", "entity_id", "email", "city", "first_name", "last_name"),
    "company_name",
)
ITEMS = EntitySpec(
    "items", "item", ITEM_FIELDS,
    ("id", "itemid", "displayname", "itemtype", "baseprice", "isinactive", "lastmodifieddate"),
    ("display_name", "item_id"),
    "display_name",
)
ENTITIES: dict[str, EntitySpec] = {"customers": CUSTOMERS, "items": ITEMS}


def utc_moment(value: Any, zone: ZoneInfo) -> str:
    """A NetSuite moment ("2024-01-31T09:15:00" or "2024-01-31 09:15:00", account time zone,
    or with an explicit offset) as ISO-8601 in UTC, whole seconds
    ("2024-01-31T17:15:00+00:00"). Raises ValueError when it is not a moment."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("missing")
    moment = datetime.fromisoformat(value.strip())
    if moment.tzinfo is None:  # wall time in the account's zone (fold 0 when ambiguous)
        offset = zone.utcoffset(moment)
        assert offset is not None
        moment -= offset
    else:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.replace(microsecond=0).isoformat() + "+00:00"


def netsuite_id(value: Any) -> int:
    """NetSuite's internal id as an int; ValueError unless it is one PostgreSQL can hold
    (1 to 2^63 - 1)."""
    number = int(value)
    if not 1 <= number <= _MAX_ID:
        raise ValueError(f"id out of range: {number}")
    return number


_NOT_TEXT = frozenset({"netsuite_id", "is_person", "is_inactive", "date_created",
                       "last_modified"})
_TEXT_COLUMNS: dict[str, list[tuple[str, str]]] = {}


def _text_columns(spec: EntitySpec) -> list[tuple[str, str]]:
    if spec.name not in _TEXT_COLUMNS:
        _TEXT_COLUMNS[spec.name] = [(f, c) for f, c in zip(spec.fields, spec.columns, strict=True)
                                    if f not in _NOT_TEXT]
    return _TEXT_COLUMNS[spec.name]


def _flag(row: dict[str, Any], column: str) -> bool:
    value = row.get(column)
    return value is True or (isinstance(value, str) and value.upper() in ("T", "TRUE"))


@dataclass(frozen=True)
class ParsedRow:
    """A row turned into a record; ``error`` says why it is invalid (the record then holds
    whatever could be read, for storing as FAILED)."""

    record: Record
    error: str = ""


def _storable(text: str) -> str:
    """``text`` without what PostgreSQL refuses (NUL, lone surrogates), for storing a record
    FAILED with what could be read."""
    return _SURROGATE.sub("\ufffd", text.replace("\x00", ""))


def _price(text: str) -> tuple[str, str]:
    """(the price as stored, "") or ("", why it is not one PostgreSQL's numeric(14, 2) holds)."""
    try:
        price = Decimal(text).quantize(_CENTS)
    except InvalidOperation:
        return "", f"baseprice is not a number: {text[:30]!r}"
    if not price.is_finite() or abs(price) >= _PRICE_LIMIT:
        return "", f"baseprice is out of range: {text[:30]!r}"
    return str(price), ""


def parse_row(spec: EntitySpec, row: dict[str, Any], zone: ZoneInfo) -> ParsedRow:
    """A SuiteQL/RESTlet row as a record, validated: anything PostgreSQL could not store is a
    problem of this record (the record then holds a storable version of it). Raises
    ValueError/KeyError/TypeError when ``row["id"]`` is not an id (see :func:`netsuite_id`)."""
    record: Record = {"netsuite_id": netsuite_id(row["id"])}
    problems: list[str] = []
    for field, column in _text_columns(spec):
        value = row.get(column)
        text = "" if value is None else str(value).strip()
        # isascii() is O(1): only non-ASCII text is searched for a surrogate
        if "\x00" in text or (not text.isascii() and _SURROGATE.search(text)):
            problems.append(f"{column} holds a NUL or a lone surrogate: {text[:40]!r}")
            text = _storable(text)
        record[field] = text
    record["is_inactive"] = _flag(row, "isinactive")
    for field, column in (("date_created", "datecreated"), ("last_modified", "lastmodifieddate")):
        if field not in spec.fields:
            continue
        try:
            record[field] = utc_moment(row.get(column), zone)
        except (ValueError, OverflowError):  # OverflowError: beyond year 9999 once in UTC
            record[field] = ""
            problems.append(f"{column} is not a date: {str(row.get(column))[:40]!r}")
    if spec.name == "customers":
        record["is_person"] = _flag(row, "isperson")
        if not record["entity_id"]:
            problems.append("entityid is empty")
        if record["is_person"] and not (record["first_name"] or record["last_name"]):
            problems.append("a person needs a first or last name")
        if not record["is_person"] and not record["company_name"]:
            problems.append("companyname is empty")
        if record["email"] and not _EMAIL.match(record["email"]):
            problems.append(f"email is not an address: {record['email'][:60]!r}")
    else:
        if not record["item_id"]:
            problems.append("itemid is empty")
        if record["item_type"] not in ITEM_TYPES:
            problems.append(f"itemtype is unknown: {record['item_type'][:30]!r}")
        if record["base_price"]:
            record["base_price"], problem = _price(record["base_price"])
            if problem:
                problems.append(problem)
    return ParsedRow(record, "; ".join(problems))


def content_hash(spec: EntitySpec, record: Record) -> str:
    """A digest of every field: equal digests mean nothing we track changed."""
    text = "\x1f".join(str(record.get(field, "")) for field in spec.fields)
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()
