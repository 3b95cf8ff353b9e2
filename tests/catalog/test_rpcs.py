"""CatalogService through a real server: validation, lookups, paging, KPIs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import grpc
import pytest
from syncsuite.catalog.v1 import catalog_service_pb2 as pb

from shared.paging import decode_page_token, encode_page_token
from tests.catalog.conftest import ADMIN, Catalog, RunningSandbox, catalog_env, start_catalog
from tests.waiting import wait_for


@pytest.fixture
async def catalog(service_env: dict[str, str], sandbox: RunningSandbox, clean: None
                  ) -> AsyncIterator[Catalog]:
    async with start_catalog(catalog_env(service_env, sandbox.url,
                                         CATALOG_PRELOAD="false")) as running:
        await running.sync("all")
        yield running


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({}, "query"),
        ({"query": "x" * 101}, "query"),
        ({"query": "ab\x01"}, "query"),
        ({"query": "acme", "page_size": -1}, "page_size"),
        ({"query": "acme", "page_size": 201}, "page_size"),
        ({"query": "acme", "page_token": "garbage"}, "page_token"),
        ({"country": "x" * 101}, "country"),
    ],
    ids=["empty", "oversize", "control-char", "negative-page", "huge-page", "bad-token",
         "oversize-filter"],
)
async def test_bad_search_input_is_invalid_argument_naming_the_field(
    catalog: Catalog, request_fields: dict[str, object], field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await catalog.stub.SearchCustomers(pb.SearchCustomersRequest(**request_fields),
                                           timeout=5)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (raised.value.details() or "").startswith(field)


async def test_search_pages_through_every_match_in_rank_order(catalog: Catalog) -> None:
    first = await catalog.search("a", page_size=50)
    assert first.total_size > 100 and len(first.customers) == 50
    seen = [c.netsuite_id for c in first.customers]
    token = first.next_page_token
    while token:
        page = await catalog.search("a", page_size=50, page_token=token)
        seen += [c.netsuite_id for c in page.customers]
        token = page.next_page_token
    assert len(seen) == len(set(seen)) == first.total_size
    with pytest.raises(grpc.aio.AioRpcError) as raised:  # a token of another search
        await catalog.search("b", page_size=50, page_token=first.next_page_token)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_filters_and_item_search(catalog: Catalog) -> None:
    german = await catalog.search(country="de", page_size=200)
    assert german.total_size > 0 and {c.country for c in german.customers} == {"DE"}
    services = await catalog.stub.SearchItems(
        pb.SearchItemsRequest(item_type="service", page_size=200), timeout=5)
    assert services.total_size > 0 and {i.item_type for i in services.items} == {"Service"}
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await catalog.stub.SearchItems(pb.SearchItemsRequest(), timeout=5)
    assert "item_type" in (raised.value.details() or "")


async def test_get_customer_and_item_by_netsuite_id(catalog: Catalog) -> None:
    customer = await catalog.stub.GetCustomer(pb.GetCustomerRequest(netsuite_id="12"), timeout=5)
    assert customer.customer.entity_id == "CUST-000012"
    assert customer.provenance.source == pb.TIER_NETSUITE
    item = await catalog.stub.GetItem(pb.GetItemRequest(netsuite_id="3"), timeout=5)
    assert item.item.netsuite_id == "3" and item.item.base_price
    for bad, code in (("abc", grpc.StatusCode.INVALID_ARGUMENT),
                      ("", grpc.StatusCode.INVALID_ARGUMENT),
                      ("999999", grpc.StatusCode.NOT_FOUND)):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await catalog.stub.GetCustomer(pb.GetCustomerRequest(netsuite_id=bad), timeout=5)
        assert raised.value.code() == code


async def test_a_netsuite_id_is_ascii_digits_only(catalog: Catalog) -> None:
    """str.isdigit() takes "²" (which int() refuses: INTERNAL) and Arabic-Indic or
    full-width digits (which int() reads: "١٢" was customer 12)."""
    for raw in ("²", "١٢", "１２", "+12", "1_2", "1234567890123456789"):
        for call, request in ((catalog.stub.GetCustomer, pb.GetCustomerRequest),
                              (catalog.stub.GetItem, pb.GetItemRequest)):
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await call(request(netsuite_id=raw), timeout=5)
            assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, raw
            assert (raised.value.details() or "").startswith("netsuite_id")


def _token_with(token: str, **changes: object) -> str:
    return encode_page_token({**decode_page_token(token), **changes})


async def test_a_page_token_is_refused_once_the_data_set_changed(catalog: Catalog) -> None:
    first = await catalog.search("a", page_size=50)
    second = await catalog.search("a", page_size=50, page_token=first.next_page_token)
    assert second.customers
    with pytest.raises(grpc.aio.AioRpcError) as raised:  # true is no offset, though an int
        await catalog.search("a", page_size=50,
                             page_token=_token_with(first.next_page_token, o=True))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    # a sync publishes a new data set: its pages are not the old one's
    await catalog.sync("customers", full=True)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await catalog.search("a", page_size=50, page_token=first.next_page_token)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "search again from the first page" in (raised.value.details() or "")
    again = await catalog.search("a", page_size=50)
    assert (await catalog.search("a", page_size=50, page_token=again.next_page_token)
            ).customers == second.customers


async def test_an_items_sync_refreshes_the_kpi_view(
    catalog: Catalog, sandbox: RunningSandbox
) -> None:
    before = await catalog.stub.GetCustomerKpis(pb.GetCustomerKpisRequest(), timeout=5)
    sandbox.mutate(entity="items", share=0.0, add=2)
    report = await catalog.sync("items")
    assert [o.name for o in report.operations] == ["items", "kpis"]
    after = await catalog.stub.GetCustomerKpis(pb.GetCustomerKpisRequest(), timeout=5)
    assert after.kpis.total_items == before.kpis.total_items + 2 == 122


async def test_data_source_status_names_the_sandbox(catalog: Catalog) -> None:
    status = await catalog.stub.GetDataSourceStatus(pb.GetDataSourceStatusRequest(), timeout=5)
    assert status.configured == "auto" and status.active == pb.DATA_SOURCE_SANDBOX
    assert not status.credentials_configured and status.last_call_ok


async def test_kpis_come_from_the_view_and_refresh_needs_admin(
    catalog: Catalog, database_url: str
) -> None:
    reply = await catalog.stub.GetCustomerKpis(pb.GetCustomerKpisRequest(), timeout=5)
    assert reply.kpis.total_customers == 300 and reply.kpis.total_items == 120
    assert sum(c.count for c in reply.kpis.customers_by_country) == 300
    assert reply.hours_since_update < 1
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await catalog.stub.RefreshCustomerKpis(pb.RefreshCustomerKpisRequest(), timeout=5)
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    connection = await asyncpg.connect(database_url)
    try:  # the view is a cache: rows written since stay invisible until a refresh
        await connection.execute(
            "UPDATE catalog.customers SET deleted_at = now() WHERE netsuite_id <= 10")
    finally:
        await connection.close()
    stale = await catalog.stub.GetCustomerKpis(pb.GetCustomerKpisRequest(), timeout=5)
    assert stale.kpis.total_customers == 300
    await catalog.stub.RefreshCustomerKpis(pb.RefreshCustomerKpisRequest(), metadata=ADMIN,
                                           timeout=10)
    fresh = await catalog.stub.GetCustomerKpis(pb.GetCustomerKpisRequest(), timeout=5)
    assert fresh.kpis.total_customers == 290


async def _refresh_holds_the_view(connection: asyncpg.Connection) -> bool:
    """A refresh has taken its lock on the KPI view (and waits for the table it reads)."""
    held = await connection.fetchval(
        "SELECT count(*) FROM pg_locks WHERE granted AND relation ="
        " 'catalog.customer_kpis_cache'::regclass"
        " AND mode IN ('ExclusiveLock', 'AccessExclusiveLock')")
    return bool(held)


async def test_kpis_are_read_while_a_refresh_is_held(
    service_env: dict[str, str], sandbox: RunningSandbox, clean: None, database_url: str
) -> None:
    """A refresh is held open (the table it reads is locked) while readers read: the view's
    rows answer at once. A plain REFRESH would hold the view's own lock, and every read
    would wait for it. No row is kept in memory (CATALOG_KPI_CACHE_SECONDS=0): each read
    reads the view."""
    env = catalog_env(service_env, sandbox.url, CATALOG_PRELOAD="false",
                      CATALOG_KPI_CACHE_SECONDS="0")
    async with start_catalog(env) as catalog:
        await catalog.sync("all")
        blocker = await asyncpg.connect(database_url)
        try:
            async with blocker.transaction():
                await blocker.execute("LOCK TABLE catalog.customers IN ACCESS EXCLUSIVE MODE")
                refresh = asyncio.ensure_future(catalog.stub.RefreshCustomerKpis(
                    pb.RefreshCustomerKpisRequest(), metadata=ADMIN, timeout=30))
                await wait_for(lambda: _refresh_holds_the_view(blocker), timeout=10, every=0.02)
                for _ in range(5):  # each well within the time the refresh is held
                    reply = await catalog.stub.GetCustomerKpis(pb.GetCustomerKpisRequest(),
                                                               timeout=1)
                    assert reply.kpis.total_customers == 300
                assert not refresh.done()
            refreshed = await asyncio.wait_for(refresh, timeout=30)
            assert refreshed.refresh_duration.ToTimedelta().total_seconds() > 0
            report = await catalog.sync("kpis")
            assert report.operations[0].name == "kpis" and report.operations[0].ok
            logged = await blocker.fetchval(
                "SELECT count(*) FROM catalog.system_logs WHERE source = 'customer_kpis'"
                " AND level = 'INFO'")
        finally:
            await blocker.close()
    assert logged >= 3  # the sync's refresh, the held RPC and the kpis scope


async def test_a_repeated_search_is_the_same_answer_with_its_own_provenance(
    catalog: Catalog,
) -> None:
    first = await catalog.search("acme", page_size=7)
    await asyncio.sleep(0.05)
    again = await catalog.search("acme", page_size=7)  # kept serialized by the index
    assert again.customers == first.customers and again.total_size == first.total_size
    assert again.next_page_token == first.next_page_token
    assert again.provenance.source == first.provenance.source == pb.TIER_NETSUITE
    assert again.provenance.fetch_time == first.provenance.fetch_time
    age = again.provenance.data_age.ToTimedelta() - first.provenance.data_age.ToTimedelta()
    assert age.total_seconds() >= 0.05  # the data's age is the call's own
    for customer in first.customers:  # records serialized once per index, as GetCustomer says
        found = await catalog.stub.GetCustomer(
            pb.GetCustomerRequest(netsuite_id=customer.netsuite_id), timeout=5)
        assert found.customer == customer
    second = await catalog.search("acme", page_size=7, page_token=first.next_page_token)
    assert not {c.netsuite_id for c in second.customers} & {c.netsuite_id
                                                          for c in first.customers}
