"""Which RPCs need which token when a method has no access option of ours."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from shared.server import Runtime, ServiceDefinition, running_service
from tests.conftest import ADMIN_TOKEN

HIDDEN = "/syncsuite.test.Hidden/Peek"


async def _peek(request: bytes, context: object) -> bytes:
    return b"secret state"


async def _register_without_descriptor(runtime: Runtime) -> None:
    # a servicer added straight to the server: no descriptor, so no access options
    handler = grpc.method_handlers_generic_handler("syncsuite.test.Hidden", {
        "Peek": grpc.unary_unary_rpc_method_handler(_peek)})
    runtime.server.add_generic_rpc_handlers((handler,))


SERVICE = ServiceDefinition(name="hidden", default_port=0, setup=_register_without_descriptor)


@pytest.mark.timeout(30)
async def test_a_method_without_access_options_needs_the_admin_token_but_health_does_not(
    service_env: dict[str, str],
) -> None:
    async with running_service(SERVICE, service_env) as service, \
            grpc.aio.insecure_channel(service.address) as channel:
        peek = channel.unary_unary(HIDDEN)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await peek(b"", timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        admin = (("authorization", f"Bearer {ADMIN_TOKEN}"),)
        assert await peek(b"", metadata=admin, timeout=5) == b"secret state"
        health = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
