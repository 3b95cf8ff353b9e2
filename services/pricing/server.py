"""The pricing service: wiring. Domain RPCs not built yet answer UNIMPLEMENTED."""

from __future__ import annotations

from pathlib import Path

from syncsuite.pricing.v1 import pricing_service_pb2, pricing_service_pb2_grpc

from shared.server import Runtime, ServiceDefinition


async def setup(runtime: Runtime) -> None:
    runtime.add_servicer(
        pricing_service_pb2.DESCRIPTOR.services_by_name["PricingService"],
        pricing_service_pb2_grpc.add_PricingServiceServicer_to_server,
        pricing_service_pb2_grpc.PricingServiceServicer(),
    )


SERVICE = ServiceDefinition(
    name="pricing",
    default_port=50052,
    setup=setup,
    migrations=Path(__file__).parent / "migrations",
)
