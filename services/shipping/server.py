"""The shipping service: wiring. Domain RPCs not built yet answer UNIMPLEMENTED."""

from __future__ import annotations

from pathlib import Path

from syncsuite.shipping.v1 import shipping_service_pb2, shipping_service_pb2_grpc

from shared.server import Runtime, ServiceDefinition


async def setup(runtime: Runtime) -> None:
    runtime.add_servicer(
        shipping_service_pb2.DESCRIPTOR.services_by_name["ShippingService"],
        shipping_service_pb2_grpc.add_ShippingServiceServicer_to_server,
        shipping_service_pb2_grpc.ShippingServiceServicer(),
    )


SERVICE = ServiceDefinition(
    name="shipping",
    default_port=50053,
    setup=setup,
    migrations=Path(__file__).parent / "migrations",
)
