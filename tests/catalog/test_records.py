"""Rows as NetSuite sends them, turned into validated records."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from services.catalog.records import ENTITIES, content_hash, parse_row, utc_moment
from services.catalog.tiers import parse_rows

ZONE = ZoneInfo("America/Los_Angeles")
ROW = {"id": "17", "entityid": "CUST-17", "companyname": "Acme Inc.", "isperson": "F",
       "firstname": "Ada", "lastname": "Lovelace", "email": "ada@acme.example",
       "phone": "+1", "subsidiary": "Parent", "address": "1 Main St", "city": "Austin",
       "country": "US", "industry": "Software", "isinactive": "T",
       "datecreated": "2024-01-31 09:15:00", "lastmodifieddate": "2024-07-01T23:30:00"}


def test_a_valid_row_in_the_accounts_time_zone() -> None:
    parsed = parse_row(ENTITIES["customers"], ROW, ZONE)
    assert parsed.error == ""
    record = parsed.record
    assert record["netsuite_id"] == 17 and record["is_inactive"] is True
    assert record["is_person"] is False
    assert record["date_created"] == "2024-01-31T17:15:00+00:00"  # PST = UTC-8
    assert record["last_modified"] == "2024-07-02T06:30:00+00:00"  # PDT = UTC-7


@pytest.mark.parametrize(("sent", "utc"), [
    ("2024-01-31 09:15:00", "2024-01-31T17:15:00+00:00"),
    ("2024-01-31T09:15:00.750", "2024-01-31T17:15:00+00:00"),  # whole seconds
    ("2021-03-14 02:30:00", "2021-03-14T10:30:00+00:00"),  # in the spring-forward gap
    ("2021-11-07 01:30:00", "2021-11-07T08:30:00+00:00"),  # ambiguous: the first one (PDT)
    ("2021-11-07 01:30:00+05:00", "2021-11-06T20:30:00+00:00"),  # its own offset wins
    (" 2024-07-01 23:30:00 ", "2024-07-02T06:30:00+00:00"),
])
def test_moments_in_the_accounts_time_zone_become_utc(sent: str, utc: str) -> None:
    assert utc_moment(sent, ZONE) == utc


@pytest.mark.parametrize("sent", ["", "  ", None, "yesterday", "2024-13-01 00:00:00", 17])
def test_what_is_not_a_moment_is_refused(sent: object) -> None:
    with pytest.raises(ValueError):
        utc_moment(sent, ZONE)


def test_invalid_rows_say_why() -> None:
    spec = ENTITIES["customers"]
    bad = {**ROW, "email": "nope", "companyname": "", "lastmodifieddate": "yesterday"}
    error = parse_row(spec, bad, ZONE).error
    assert "email" in error and "companyname" in error and "lastmodifieddate" in error
    person = {**ROW, "isperson": "T", "companyname": ""}
    assert parse_row(spec, person, ZONE).error == ""
    item = {"id": "3", "itemid": "", "displayname": "Mug", "itemtype": "Bogus",
            "baseprice": "x", "isinactive": "F", "lastmodifieddate": "2024-01-01 00:00:00"}
    error = parse_row(ENTITIES["items"], item, ZONE).error
    assert "itemid" in error and "itemtype" in error and "baseprice" in error


def test_the_content_hash_changes_with_any_field() -> None:
    spec = ENTITIES["customers"]
    record = parse_row(spec, ROW, ZONE).record
    assert content_hash(spec, record) == content_hash(spec, dict(record))
    assert content_hash(spec, record) != content_hash(spec, {**record, "city": "Boston"})


ITEM = {"id": "3", "itemid": "MUG-1", "displayname": "Mug", "itemtype": "InvtPart",
        "baseprice": "12.5", "isinactive": "F", "lastmodifieddate": "2024-01-01 00:00:00"}


@pytest.mark.parametrize(("column", "sent", "problem"), [
    ("baseprice", "1e12", "baseprice is out of range"),  # numeric(14, 2): below 10^12 only
    ("baseprice", "-999999999999.995", "baseprice is out of range"),  # rounds to -10^12
    ("baseprice", "NaN", "baseprice is out of range"),
    ("baseprice", "Infinity", "baseprice is not a number"),
    ("displayname", "Mug\x00s", "displayname holds a NUL"),
    ("itemid", "M\ud800G", "itemid holds a NUL or a lone surrogate"),
    ("lastmodifieddate", "9999-12-31 23:59:59", "lastmodifieddate is not a date"),  # overflows
])
def test_values_postgresql_cannot_hold_are_problems_of_their_record(
    column: str, sent: str, problem: str
) -> None:
    parsed = parse_row(ENTITIES["items"], {**ITEM, column: sent}, ZONE)
    assert problem in parsed.error
    record = parsed.record  # what is stored FAILED: only values PostgreSQL takes
    # a price PostgreSQL cannot hold is left out; any other problem keeps the good price
    assert record["base_price"] == ("" if column == "baseprice" else "12.50")
    assert "\x00" not in record["display_name"] and record["item_id"].encode()


def test_the_largest_values_postgresql_holds_are_valid() -> None:
    parsed = parse_row(ENTITIES["items"], {**ITEM, "id": str(2**63 - 1),
                                           "baseprice": "999999999999.99",
                                           "displayname": "Tasse \u00e0 caf\u00e9 \u2615"}, ZONE)
    assert parsed.error == "" and parsed.record["base_price"] == "999999999999.99"


@pytest.mark.parametrize("sent", ["0", "-3", str(2**63), "1.0", "", None])
def test_a_row_without_an_id_postgresql_holds_is_no_record(sent: object) -> None:
    with pytest.raises((ValueError, TypeError)):
        parse_row(ENTITIES["items"], {**ITEM, "id": sent}, ZONE)


def test_rows_become_one_record_per_id_the_last_winning() -> None:
    rows = [{**ITEM, "id": "1"}, {**ITEM, "id": "2"}, {**ITEM, "id": "1", "displayname": "New"},
            {**ITEM, "id": str(2**63)}]
    incoming, skipped = parse_rows(ENTITIES["items"], rows, ZONE)
    assert [(i.record["netsuite_id"], i.record["display_name"]) for i in incoming] == [
        (1, "New"), (2, "Mug")]
    assert skipped == 1
