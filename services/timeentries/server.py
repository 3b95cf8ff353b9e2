"""The timeentries service: wiring. Domain RPCs not built yet answer UNIMPLEMENTED."""

from __future__ import annotations

from pathlib import Path

from syncsuite.timeentries.v1 import timeentries_service_pb2, timeentries_service_pb2_grpc

from shared.server import Runtime, ServiceDefinition


async def setup(runtime: Runtime) -> None:
    runtime.add_servicer(
        timeentries_service_pb2.DESCRIPTOR.services_by_name["TimeEntriesService"],
        timeentries_service_pb2_grpc.add_TimeEntriesServiceServicer_to_server,
        timeentries_service_pb2_grpc.TimeEntriesServiceServicer(),
    )


SERVICE = ServiceDefinition(
    name="timeentries",
    default_port=50054,
    setup=setup,
    migrations=Path(__file__).parent / "migrations",
)
