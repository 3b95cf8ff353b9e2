"""The whole suite as processes, discovered and called with the real grpcurl binary."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.launch import SuiteProcesses
from services.suite import SUITE
from shared.processes import free_port
from tests.conftest import ADMIN_TOKEN
from tests.grpcurl import grpcurl

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def suite(service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[SuiteProcesses]:
    log_dir: Path = tmp_path_factory.mktemp("suite-logs")
    for attempt in range(2):
        processes = SuiteProcesses(
            env=service_env, log_dir=log_dir,
            grpc_ports={member.name: free_port() for member in SUITE},
            sandbox_ports={member.name: free_port() for member in SUITE},
        )
        try:
            processes.start(timeout=90)
            break
        except RuntimeError as error:
            # a port free_port() chose was taken before its process bound it (another test run
            # on the box): once more with fresh ports; anything else fails the test
            if attempt or "bind" not in str(error).lower():
                raise
    try:
        yield processes
    finally:
        processes.stop()


@pytest.mark.parametrize("member", SUITE, ids=[member.name for member in SUITE])
def test_every_service_is_discoverable_and_answers(suite: SuiteProcesses, member: object) -> None:
    address = f"127.0.0.1:{suite.grpc_port(member)}"  # type: ignore[arg-type]
    listed = grpcurl(address, "list")
    assert listed.ok, listed.stderr
    services = set(listed.stdout.split())
    assert {"syncsuite.sync.v1.SyncService", "grpc.health.v1.Health",
            "syncsuite.diagnostics.v1.DiagnosticsService"} <= services
    assert any(name.endswith("Service") and name.startswith(f"syncsuite.{member.name}.v1")
               for name in services)  # type: ignore[attr-defined]

    health = grpcurl(address, "grpc.health.v1.Health/Check")
    assert health.ok and health.json()["status"] == "SERVING"

    refused = grpcurl(address, "syncsuite.sync.v1.SyncService/GetSyncStatus")
    assert not refused.ok and "Unauthenticated" in refused.stderr

    status = grpcurl(address, "syncsuite.sync.v1.SyncService/GetSyncStatus", token=ADMIN_TOKEN)
    assert status.ok, status.stderr
    assert status.json()["service"] == member.name  # type: ignore[attr-defined]
    assert ADMIN_TOKEN not in status.stdout
