"""The one server interceptor: request id, auth, error mapping, a log line and metrics per RPC.

Access comes from each method's ``(syncsuite.auth.v1.access)`` option. Domain errors raised by
handlers become gRPC statuses here (:func:`shared.errors.to_status`), so handlers never call
``context.abort`` themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import grpc
import structlog
from google.protobuf.descriptor import ServiceDescriptor
from syncsuite.auth.v1 import access_pb2

from shared.auth import Authenticator, current_principal
from shared.errors import to_status
from shared.metrics import Metrics

__all__ = ["ServerInterceptor", "access_map"]

log = structlog.get_logger("rpc")


def access_map(services: Iterable[ServiceDescriptor]) -> dict[str, int]:
    """Full method name → Access, read from the proto options (unset → ACCESS_ADMIN)."""
    table: dict[str, int] = {}
    for service in services:
        for method in service.methods:
            access = method.GetOptions().Extensions[access_pb2.access]
            table[f"/{service.full_name}/{method.name}"] = access or access_pb2.ACCESS_ADMIN
    return table


class _Call:
    """Per-RPC bookkeeping shared by the unary and streaming wrappers."""

    __slots__ = ("code", "method", "peer", "request_id", "started")

    def __init__(self, method: str, request_id: str, peer: str) -> None:
        self.method = method
        self.request_id = request_id
        self.peer = peer
        self.started = time.perf_counter()
        self.code = grpc.StatusCode.OK


class ServerInterceptor(grpc.aio.ServerInterceptor):
    def __init__(
        self,
        authenticator: Authenticator,
        access: dict[str, int],
        metrics: Metrics,
        quiet_methods: frozenset[str] = frozenset(),
    ) -> None:
        self._auth = authenticator
        self._access = access
        self._metrics = metrics
        self._quiet = quiet_methods

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return handler
        method = details.method
        metadata = tuple(details.invocation_metadata or ())
        access = self._access.get(method, access_pb2.ACCESS_PUBLIC)
        request_id = next((str(v) for k, v in metadata if k == "x-request-id"), "") or (
            uuid.uuid4().hex
        )
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(handler.unary_unary, method, access, metadata, request_id),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(handler.unary_stream, method, access, metadata, request_id),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler  # client-streaming RPCs are not used by the suite

    async def _fail(self, call: _Call, error: BaseException, context: Any) -> None:
        code, message = to_status(error)
        call.code = code
        if code == grpc.StatusCode.INTERNAL:
            log.error("rpc_error", method=call.method, error_type=type(error).__name__,
                      error=str(error), exc_info=error)
        context.set_trailing_metadata((("x-request-id", call.request_id),))
        await context.abort(code, message)

    def _finish(self, call: _Call) -> None:
        elapsed = time.perf_counter() - call.started
        code = call.code.name
        self._metrics.rpc_total.labels(call.method, code).inc()
        self._metrics.rpc_seconds.labels(call.method, code).observe(elapsed)
        if call.method not in self._quiet or call.code != grpc.StatusCode.OK:
            principal = current_principal.get()
            log.info(
                "rpc", method=call.method, code=code, duration_ms=round(elapsed * 1000, 3),
                peer=call.peer, principal=principal.email or principal.kind,
            )

    def _start(self, call: _Call, access: int, metadata: tuple[Any, ...]) -> None:
        structlog.contextvars.bind_contextvars(request_id=call.request_id)
        current_principal.set(self._auth.authenticate(access, metadata))

    @contextlib.asynccontextmanager
    async def _observed(
        self, call: _Call, access: int, metadata: tuple[Any, ...], context: Any
    ) -> AsyncIterator[None]:
        """Authenticates, then turns whatever the handler raised into a status, and always
        records the call (log line and metrics)."""
        try:
            self._start(call, access, metadata)
            yield
        except grpc.aio.AbortError:
            call.code = context.code() or grpc.StatusCode.UNKNOWN
            raise
        except asyncio.CancelledError:
            call.code = grpc.StatusCode.CANCELLED
            raise
        except Exception as error:
            await self._fail(call, error, context)
        finally:
            self._finish(call)

    def _wrap_unary(
        self, inner: Any, method: str, access: int, metadata: tuple[Any, ...], request_id: str
    ) -> Callable[[Any, Any], Awaitable[Any]]:
        async def unary(request: Any, context: Any) -> Any:
            call = _Call(method, request_id, context.peer())
            async with self._observed(call, access, metadata, context):
                return await inner(request, context)

        return unary

    def _wrap_stream(
        self, inner: Any, method: str, access: int, metadata: tuple[Any, ...], request_id: str
    ) -> Callable[[Any, Any], AsyncIterator[Any]]:
        async def stream(request: Any, context: Any) -> AsyncIterator[Any]:
            call = _Call(method, request_id, context.peer())
            async with self._observed(call, access, metadata, context):
                async for response in inner(request, context):
                    yield response

        return stream
