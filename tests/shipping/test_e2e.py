"""End to end: the ShipStation sandbox and the shipping service as processes, driven with the
real grpcurl binary and the admin token."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.shipping.sandbox import credentials_of
from shared.processes import ManagedProcess, free_port, wait_for_health, wait_for_port
from tests.conftest import ADMIN_TOKEN, ROOT
from tests.grpcurl import grpcurl

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

SERVICE = "syncsuite.shipping.v1.ShippingService"


@pytest.fixture
def shipping_process(
    shipping_env: dict[str, str], tmp_path: Path
) -> Iterator[tuple[str, Path]]:
    sandbox_port, grpc_port = free_port(), free_port()
    sandbox = ManagedProcess.python_module(
        "shipstation-sandbox", "services.shipping.sandbox",
        {**shipping_env, "SHIPSTATION_SANDBOX_PRODUCTS": "300"}, tmp_path,
        ["--host", "127.0.0.1", "--port", str(sandbox_port)],
    )
    sandbox.cwd = ROOT
    service = ManagedProcess.python_module(
        "shipping", "services.shipping",
        {**shipping_env, "SYNCSUITE_GRPC_PORT": str(grpc_port),
         "SHIPSTATION_DATA_SOURCE": "sandbox",
         "SHIPSTATION_SANDBOX_URL": f"http://127.0.0.1:{sandbox_port}"}, tmp_path,
    )
    service.cwd = ROOT
    try:
        sandbox.start()
        wait_for_port("127.0.0.1", sandbox_port, 30)
        service.start()
        wait_for_health(f"127.0.0.1:{grpc_port}", 60)
        yield f"127.0.0.1:{grpc_port}", service.log_path
    finally:
        service.stop()
        sandbox.stop()


def test_sync_end_to_end_with_grpcurl(shipping_process: tuple[str, Path]) -> None:
    address, log_path = shipping_process
    key, secret, v2 = credentials_of(2)
    refused = grpcurl(address, "syncsuite.sync.v1.SyncService/Sync", data={"scope": "all"})
    assert not refused.ok and "Unauthenticated" in refused.stderr

    created = grpcurl(address, f"{SERVICE}/UpsertIntegration", token=ADMIN_TOKEN, data={
        "name": "e2e-store", "storeId": 10002, "apiKey": key, "apiSecret": secret,
        "v2ApiKey": v2})
    assert created.ok, created.stderr
    integration = created.json()["integration"]

    synced = grpcurl(address, "syncsuite.sync.v1.SyncService/Sync", token=ADMIN_TOKEN,
                     data={"scope": "all", "reason": "e2e"}, timeout=60)
    assert synced.ok, synced.stderr
    report = synced.json()["report"]
    assert report["status"] == "SYNC_STATUS_COMPLETED", report
    names = [op["name"] for op in report["operations"]]
    assert names[:3] == ["e2e-store/warehouses", "e2e-store/inventory_warehouses",
                         "e2e-store/inventory_locations"]
    assert set(names[3:]) == {"e2e-store/products", "e2e-store/inventory"}

    products = grpcurl(address, f"{SERVICE}/ListProducts", data={
        "integrationId": integration["integration_id"], "pageSize": 1000})
    assert products.ok, products.stderr
    listed = products.json()["products"]
    assert len(listed) == 300
    levels = grpcurl(address, f"{SERVICE}/ListInventory", data={
        "integrationId": integration["integration_id"], "sku": listed[0]["sku"]})
    assert levels.ok and levels.json()["levels"]

    logs = grpcurl(address, f"{SERVICE}/ListSyncLogs", token=ADMIN_TOKEN, data={})
    assert logs.ok and logs.json()["logs"][0]["job_id"] == report["job_id"]

    everything = " ".join([created.stdout, synced.stdout, logs.stdout,
                           log_path.read_text(errors="replace")])
    for credential in (key, secret, v2, ADMIN_TOKEN):
        assert credential not in everything
