"""The scheduler service: wiring. Domain RPCs not built yet answer UNIMPLEMENTED."""

from __future__ import annotations

from pathlib import Path

from syncsuite.scheduler.v1 import scheduler_service_pb2, scheduler_service_pb2_grpc

from shared.server import Runtime, ServiceDefinition


async def setup(runtime: Runtime) -> None:
    runtime.add_servicer(
        scheduler_service_pb2.DESCRIPTOR.services_by_name["SchedulerService"],
        scheduler_service_pb2_grpc.add_SchedulerServiceServicer_to_server,
        scheduler_service_pb2_grpc.SchedulerServiceServicer(),
    )


SERVICE = ServiceDefinition(
    name="scheduler",
    default_port=50055,
    setup=setup,
    migrations=Path(__file__).parent / "migrations",
)
