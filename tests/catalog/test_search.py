"""The in-process index: substring and prefix matching, ranking, filters, paging."""

from __future__ import annotations

import functools
import random

from services.catalog.records import ENTITIES, Record
from services.catalog.search import build_index

CUSTOMERS = ENTITIES["customers"]


def _customer(netsuite_id: int, company: str, **fields: object) -> Record:
    record: Record = {name: "" for name in CUSTOMERS.fields}
    record.update(netsuite_id=netsuite_id, entity_id=f"CUST-{netsuite_id:04d}",
                  company_name=company, is_person=False, is_inactive=False, **fields)
    return record


RECORDS = [
    _customer(1, "Acme Analytics Inc.", city="Berlin", country="DE", industry="Software",
              email="ada@acme.example"),
    _customer(2, "Bright Acme Works", city="Paris", country="FR", industry="Retail"),
    _customer(3, "Cedar Labs", city="Acmeville", country="DE", industry="Retail"),
    _customer(4, "Delta Foods", city="London", country="GB", industry="Software",
              email="zoe@delta.example"),
    _customer(5, "ACME Holdings", city="Tokyo", country="JP", industry="Energy"),
]


def _index() -> object:
    return build_index(CUSTOMERS, RECORDS, version=1, source="redis", fetched_at=None,
                       filters=("country", "industry"))


def _ids(index: object, query: str, **filters: str) -> list[int]:
    result = index.search(query, filters)  # type: ignore[attr-defined]
    return [index.records[p]["netsuite_id"] for p in result.positions]  # type: ignore[attr-defined]


def test_prefix_matches_rank_before_substring_matches_case_insensitively() -> None:
    index = _index()
    # prefixes (company, city) first in name order, then substrings in name order
    assert _ids(index, "acme") == [1, 5, 3, 2]
    assert _ids(index, "ACME") == _ids(index, "acme")


def test_matches_every_search_field_and_never_across_fields() -> None:
    index = _index()
    assert _ids(index, "cust-0004") == [4]
    assert _ids(index, "zoe@delta") == [4]
    assert _ids(index, "london") == [4]
    assert _ids(index, "foodslondon") == []
    assert _ids(index, "foods london") == []


def test_queries_spanning_punctuation_match_inside_tokens() -> None:
    index = _index()
    assert _ids(index, "me anal") == [1]  # the end of "acme", the start of "analytics"
    assert _ids(index, "ics inc.") == [1]
    assert _ids(index, "acme analytics inc.") == [1]
    assert _ids(index, "a@acme.ex") == [1]
    assert _ids(index, "me ana") == [1]
    assert _ids(index, "cme hold") == [5]
    assert _ids(index, "acme xx") == []


def test_rare_substrings_and_short_queries() -> None:
    index = _index()
    assert _ids(index, "qzxv") == []
    assert _ids(index, "xyzzy") == []
    assert set(_ids(index, "a")) == {1, 2, 3, 4, 5}
    assert _ids(index, "ok") == [5]  # Tokyo
    assert _ids(index, "@") == [1, 4]


def test_filters_alone_and_with_a_query() -> None:
    index = _index()
    assert _ids(index, "", country="de") == [1, 3]
    assert _ids(index, "acme", country="DE") == [1, 3]
    assert _ids(index, "", country="DE", industry="retail") == [3]
    assert _ids(index, "acme", industry="Nothing") == []


def test_get_by_id_and_paging() -> None:
    index = _index()
    found = index.get(4)  # type: ignore[attr-defined]
    assert found is not None and found[1]["company_name"] == "Delta Foods"
    assert index.get(99) is None  # type: ignore[attr-defined]
    result = index.search("a", {})  # type: ignore[attr-defined]
    pages = [result.page(offset, 2) for offset in (0, 2, 4)]
    assert sum(len(p) for p in pages) == result.total == 5


@functools.cache
def _sandbox_records(count: int) -> list[Record]:
    from zoneinfo import ZoneInfo

    from services.catalog.records import parse_row
    from services.catalog.sandbox import NetSuiteSandbox, SandboxConfig

    sandbox = NetSuiteSandbox(SandboxConfig(customers=count, items=1))
    return [parse_row(CUSTOMERS, row, ZoneInfo("UTC")).record
            for _, row in sandbox.ordered("customer")]


def _queries(records: list[Record], rng: random.Random, count: int) -> list[str]:
    """Pieces of field values (across punctuation and spaces, cut anywhere, in any case),
    and random runs of letters and punctuation."""
    queries = []
    while len(queries) < count:
        record = rng.choice(records)
        value = str(record[rng.choice(CUSTOMERS.search_fields)])
        if len(value) < 2:
            continue
        start = rng.randrange(len(value) - 1)
        piece = value[start:start + rng.randint(1, 12)]
        queries.append(piece.upper() if rng.random() < 0.2 else piece)
    queries += ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz.-@ ") for _ in range(
        rng.randint(1, 6))) for _ in range(count // 2)]
    return queries


def _linear_scan(index: object, query: str, filters: dict[str, str]) -> list[int]:
    """The ranking the index must give, the slow way."""
    needle = query.casefold()
    ranked_first, ranked_rest = [], []
    for position, record in enumerate(index.records):  # type: ignore[attr-defined]
        if any(str(record[name]).casefold() != value.casefold()
               for name, value in filters.items() if value):
            continue
        values = [str(record[f]).casefold() for f in CUSTOMERS.search_fields]
        if any(needle in v for v in values):
            starts = needle and any(v.startswith(needle) for v in values)
            (ranked_first if starts else ranked_rest).append(position)
    return ranked_first + ranked_rest


def test_the_index_agrees_with_a_linear_scan_on_random_queries() -> None:
    records = _sandbox_records(400)
    index = build_index(CUSTOMERS, records, version=1, source="redis", fetched_at=None)
    for query in _queries(records, random.Random(3), 400):
        assert index.search(query, {}).positions == _linear_scan(index, query, {}), query


def test_filters_and_pages_agree_with_a_linear_scan_where_sets_are_masks() -> None:
    records = _sandbox_records(3000)  # many records hold the common tokens: masks, not lists
    index = build_index(CUSTOMERS, records, version=1, source="redis", fetched_at=None,
                        filters=("country", "industry"))
    rng = random.Random(11)
    countries = sorted({str(r["country"]) for r in records})
    industries = sorted({str(r["industry"]) for r in records})
    for query in [*_queries(records, rng, 200), "", "cust-0", "a", "@", "e", ". "]:
        filters = {"country": rng.choice(["", *countries]).lower(),
                   "industry": rng.choice(["", "", *industries])}
        expected = _linear_scan(index, query, filters)
        result = index.search(query, filters)
        assert result.positions == expected, (query, filters)
        assert result.total == len(expected)
        for offset in (0, 7, result.first_count, len(expected) // 2):
            assert result.page(offset, 9) == expected[offset:offset + 9], (query, offset)
