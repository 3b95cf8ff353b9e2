"""The pricing service and its StockX sandbox as processes, called with the real grpcurl."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.pricing.sandbox import build_sandbox
from shared.auth import issue_user_token
from shared.processes import ManagedProcess, free_port, wait_for_health, wait_for_port
from tests.conftest import ADMIN_TOKEN, JWT_SECRET
from tests.grpcurl import grpcurl

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]
SEED = "3"


@pytest.fixture(scope="module")
def pricing_address(service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
                    ) -> Iterator[str]:
    logs: Path = tmp_path_factory.mktemp("pricing-e2e")
    sandbox_port, grpc_port = free_port(), free_port()
    env = {**service_env, "STOCKX_SANDBOX_PRODUCTS": "50", "STOCKX_SANDBOX_SEED": SEED,
           "STOCKX_SANDBOX_RATE": "100", "STOCKX_SANDBOX_BURST": "10",
           "STOCKX_RATE_PER_SECOND": "100",
           "STOCKX_SANDBOX_URL": f"http://127.0.0.1:{sandbox_port}",
           "SYNCSUITE_GRPC_PORT": str(grpc_port)}
    sandbox = ManagedProcess.python_module(
        "stockx-sandbox", "services.pricing.sandbox", env, logs,
        ["--host", "127.0.0.1", "--port", str(sandbox_port)])
    service = ManagedProcess.python_module("pricing", "services.pricing", env, logs)
    try:
        sandbox.start()
        wait_for_port("127.0.0.1", sandbox_port, 30)
        service.start()
        try:
            wait_for_health(f"127.0.0.1:{grpc_port}", 60)
        except TimeoutError:
            pytest.fail(f"pricing did not start:\n{service.log_tail()}")
        yield f"127.0.0.1:{grpc_port}"
    finally:
        service.stop()
        sandbox.stop()


def test_grpcurl_sync_then_get_latest_prices(pricing_address: str) -> None:
    product = build_sandbox({}, products=50, seed=int(SEED)).products[7]
    user = issue_user_token(JWT_SECRET, "e2e@example.com")
    method = "syncsuite.pricing.v1.PricingService/"
    portfolio = grpcurl(pricing_address, method + "SetPortfolio", token=user,
                        data={"items": [{"productId": product.product_id}]})
    assert portfolio.ok, portfolio.stderr
    synced = grpcurl(pricing_address, "syncsuite.sync.v1.SyncService/Sync", token=ADMIN_TOKEN,
                     data={"scope": "prices", "reason": "e2e"})
    assert synced.ok, synced.stderr
    report = synced.json()["report"]
    assert report["status"] == "SYNC_STATUS_COMPLETED", report
    latest = grpcurl(pricing_address, method + "GetLatestPrices",
                     data={"sku": product.style_id, "currencyCodes": ["USD", "GBP"]})
    assert latest.ok, latest.stderr
    answer = latest.json()
    # grpcurl prints the proto field names
    assert answer["product"]["product_id"] == product.product_id
    assert {p["currency_code"] for p in answer["prices"]} == {"USD", "GBP"}
    assert len(answer["prices"]) == 2 * len(product.variants)
    refused = grpcurl(pricing_address, method + "GetLatestPrices",
                      data={"sku": product.style_id, "currencyCodes": ["ABC"]})
    assert not refused.ok and "InvalidArgument" in refused.stderr
    assert "currency_codes" in refused.stderr
    missing = grpcurl(pricing_address, method + "GetLatestPrices", data={"productId": "nope"})
    assert not missing.ok and "NotFound" in missing.stderr
