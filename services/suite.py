"""The suite as `make run` and the end-to-end tests start it: five services, four sandboxes."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

__all__ = ["SUITE", "SuiteMember"]


@dataclass(frozen=True)
class SuiteMember:
    name: str
    grpc_port: int
    # The vendor API this service syncs from, its sandbox port and the variable that points the
    # service at the sandbox when no real credentials are configured.
    upstream: str = ""
    sandbox_port: int = 0
    sandbox_url_env: str = ""

    @property
    def module(self) -> str:
        return f"services.{self.name}"

    @property
    def sandbox_module(self) -> str | None:
        """The sandbox's module, once the service has one."""
        module = f"services.{self.name}.sandbox"
        return module if self.upstream and importlib.util.find_spec(module) else None

    @property
    def address_env(self) -> str:
        return f"SYNCSUITE_{self.name.upper()}_ADDRESS"


SUITE = (
    SuiteMember("catalog", 50051, "NetSuite", 8091, "NETSUITE_SANDBOX_URL"),
    SuiteMember("pricing", 50052, "StockX", 8092, "STOCKX_SANDBOX_URL"),
    SuiteMember("shipping", 50053, "ShipStation", 8093, "SHIPSTATION_SANDBOX_URL"),
    SuiteMember("timeentries", 50054, "Zoho", 8094, "ZOHO_SANDBOX_URL"),
    SuiteMember("scheduler", 50055),
)
