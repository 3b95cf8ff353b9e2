"""The catalog and its NetSuite sandbox started as processes, called with grpcurl."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.processes import ManagedProcess, free_port, wait_for_health, wait_for_port
from tests.catalog.conftest import catalog_env
from tests.conftest import ADMIN_TOKEN
from tests.grpcurl import grpcurl

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


@pytest.fixture
def catalog_address(service_env: dict[str, str], clean: None, tmp_path: Path) -> Iterator[str]:
    sandbox_port, grpc_port = free_port(), free_port()
    sandbox = ManagedProcess.python_module(
        "netsuite-sandbox", "services.catalog.sandbox",
        {**service_env, "NETSUITE_SANDBOX_CUSTOMERS": "200", "NETSUITE_SANDBOX_ITEMS": "50"},
        tmp_path, ["--host", "127.0.0.1", "--port", str(sandbox_port)],
    ).start()
    service = None
    try:
        wait_for_port("127.0.0.1", sandbox_port, 30)
        env = catalog_env(service_env, f"http://127.0.0.1:{sandbox_port}",
                          SYNCSUITE_GRPC_PORT=str(grpc_port))
        service = ManagedProcess.python_module("catalog", "services.catalog", env,
                                               tmp_path).start()
        address = f"127.0.0.1:{grpc_port}"
        wait_for_health(address, 60)
        yield address
    finally:
        if service is not None:
            service.stop()
        sandbox.stop()


def test_grpcurl_searches_the_catalog_end_to_end(catalog_address: str) -> None:
    found = grpcurl(catalog_address, "syncsuite.catalog.v1.CatalogService/SearchCustomers",
                    data={"query": "cust-00001", "pageSize": 5})
    assert found.ok, found.stderr
    body = found.json()
    assert body.get("total_size") == 10, found.stdout  # CUST-000010 … CUST-000019
    assert all(c["entity_id"].startswith("CUST-00001") for c in body["customers"])
    assert len(body["customers"]) == 5 and body["next_page_token"]
    assert body["provenance"]["source"] in ("TIER_NETSUITE", "TIER_REDIS")

    refused = grpcurl(catalog_address, "syncsuite.catalog.v1.CatalogService/ClearCache")
    assert not refused.ok and "Unauthenticated" in refused.stderr

    synced = grpcurl(catalog_address, "syncsuite.sync.v1.SyncService/Sync",
                     data={"scope": "all", "reason": "e2e"}, token=ADMIN_TOKEN)
    assert synced.ok, synced.stderr
    report = synced.json()["report"]
    assert report["status"] == "SYNC_STATUS_COMPLETED"
    assert int(report["counts"]["seen"]) == 250

    invalid = grpcurl(catalog_address, "syncsuite.catalog.v1.CatalogService/SearchItems",
                      data={"query": "", "pageSize": 5})
    assert not invalid.ok and "InvalidArgument" in invalid.stderr

    kpis = grpcurl(catalog_address, "syncsuite.catalog.v1.CatalogService/GetCustomerKpis")
    assert kpis.ok and int(kpis.json()["kpis"]["total_customers"]) == 200
    assert ADMIN_TOKEN not in synced.stdout + kpis.stdout
