"""The catalog service: wiring. Domain RPCs not built yet answer UNIMPLEMENTED."""

from __future__ import annotations

from pathlib import Path

from syncsuite.catalog.v1 import catalog_service_pb2, catalog_service_pb2_grpc

from shared.server import Runtime, ServiceDefinition


async def setup(runtime: Runtime) -> None:
    runtime.add_servicer(
        catalog_service_pb2.DESCRIPTOR.services_by_name["CatalogService"],
        catalog_service_pb2_grpc.add_CatalogServiceServicer_to_server,
        catalog_service_pb2_grpc.CatalogServiceServicer(),
    )


SERVICE = ServiceDefinition(
    name="catalog",
    default_port=50051,
    setup=setup,
    migrations=Path(__file__).parent / "migrations",
)
