"""Reading NetSuite by id ranges (keyset paging) while NetSuite changes: no live record lost,
none read twice, and a read that does not add up to NetSuite's totals says so."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx

from services.catalog.keyset import IdRange
from services.catalog.netsuite import NetSuiteClient
from services.catalog.records import CUSTOMERS
from services.catalog.sandbox import NetSuiteSandbox, SandboxConfig, create_app
from services.catalog.settings import SANDBOX_CREDENTIALS, Upstream
from tests.catalog.conftest import FirstPageHook

ZONE = ZoneInfo("America/Los_Angeles")


def test_the_rest_of_a_range_is_cut_into_ranges_of_equal_id_width() -> None:
    assert IdRange(0, 1000).rest(100, 3) == [
        IdRange(100, 400), IdRange(400, 700), IdRange(700, 1000)]
    assert IdRange(0, 1000).rest(998, 5) == [IdRange(998, 999), IdRange(999, 1000)]
    assert IdRange(0, 1000).rest(1000, 2) == []
    assert IdRange(7).rest(100, 4) == [IdRange(100)]  # open: nothing to cut
    big = IdRange(0, 2**63 - 1).rest(2**62, 2)  # exact integers, no float rounding
    assert big[0].last == 2**62 + (2**62 - 1) // 2 and big[-1].last == 2**63 - 1
    assert IdRange(5, 9).condition() == "id > 5 AND id <= 9"


class Reader:
    """A NetSuite client on an in-process sandbox whose first page of a fetch can be
    followed by a change (see FirstPageHook)."""

    def __init__(self, customers: int, page_size: int) -> None:
        self.sandbox = NetSuiteSandbox(SandboxConfig(customers=customers, items=1))
        app, _ = create_app(self.sandbox)
        self.hook = FirstPageHook(self.sandbox, app)
        self.client = NetSuiteClient(
            Upstream("sandbox", SANDBOX_CREDENTIALS, "http://sandbox", None, False),
            zone=ZONE, page_size=page_size, transport=httpx.ASGITransport(app=self.hook))

    def live_ids(self) -> list[int]:
        return sorted(self.sandbox.tables["customer"])


def _ids(rows: list[dict[str, object]]) -> list[int]:
    return [int(str(row["id"])) for row in rows]


async def test_a_deletion_during_a_fetch_hides_no_live_record() -> None:
    """Offsets moved back by the deletion of record 50 lost record 101 (the first of the
    second page), and a full sync marked it deleted."""
    reader = Reader(customers=300, page_size=100)
    reader.hook.arm(lambda: reader.sandbox.remove("customer", 50))
    try:
        fetched = await reader.client.fetch(CUSTOMERS)
    finally:
        await reader.client.aclose()
    ids = _ids(fetched.rows)
    assert 50 not in reader.live_ids() and set(reader.live_ids()) <= set(ids)
    assert ids == sorted(set(ids))  # in id order, each once
    assert fetched.complete  # record 50 was read before it went: the rows are NetSuite's total


async def test_a_record_joining_an_incremental_fetch_is_never_read_twice() -> None:
    """Offsets moved on by a lower id modified mid-fetch read one record twice, and the
    write of the batch failed (ON CONFLICT cannot affect a row twice)."""
    reader = Reader(customers=300, page_size=50)
    changed = set(reader.sandbox.mutate("customer", 0.5)["changed"])
    joining = min(set(reader.live_ids()) - changed)
    reader.hook.arm(lambda: reader.sandbox.put("customer", joining, {}))  # modified now
    try:
        fetched = await reader.client.fetch(CUSTOMERS, datetime.now(UTC) - timedelta(hours=1))
    finally:
        await reader.client.aclose()
    ids = _ids(fetched.rows)
    assert len(ids) == len(set(ids)) and changed <= set(ids)


async def test_a_read_that_does_not_add_up_to_netsuites_totals_is_not_complete() -> None:
    """Record 250 deleted after the first page reported 300 rows: the read is right (250 is
    gone) but cannot tell that from a lost record, so no deletion may be inferred from it."""
    reader = Reader(customers=300, page_size=100)
    reader.hook.arm(lambda: reader.sandbox.remove("customer", 250))
    try:
        fetched = await reader.client.fetch(CUSTOMERS)
        assert not fetched.complete and _ids(fetched.rows) == reader.live_ids()
        reader.hook.arm(lambda: reader.sandbox.remove("customer", 260), sweep=True)
        assert await reader.client.fetch_ids(CUSTOMERS) is None  # the sweep alike
        assert await reader.client.fetch_ids(CUSTOMERS) == reader.live_ids()
    finally:
        await reader.client.aclose()


async def test_ranges_are_read_side_by_side_about_one_request_per_page() -> None:
    """A full fetch costs its pages and one MAX(id), in two rounds (the first page beside the
    MAX, then every other range at once); sparse ids only cost an extra, empty, range."""
    reader = Reader(customers=1000, page_size=100)
    for record_id in range(301, 901):  # ids 1-300 and 901-1000: a gap in the middle
        reader.sandbox.remove("customer", record_id)
    try:
        fetched = await reader.client.fetch(CUSTOMERS)
    finally:
        await reader.client.aclose()
    assert _ids(fetched.rows) == reader.live_ids() and fetched.complete
    pages = 4
    assert pages + 1 <= reader.client.http.stats.requests <= pages + 4
