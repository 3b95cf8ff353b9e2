"""The one server interceptor: request id, auth, error mapping, a log line and metrics per RPC.

Access comes from each method's ``(syncsuite.auth.v1.access)`` option. Domain errors raised by
handlers become gRPC statuses here (:func:`shared.errors.to_status`), so handlers never call
``context.abort`` themselves. The wrapped handler of a method is built once and reused: the
per-call work is only what each call needs (metadata, auth, timing, the log line).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from types import TracebackType
from typing import Any

import grpc
import structlog
from google.protobuf.descriptor import ServiceDescriptor
from syncsuite.auth.v1 import access_pb2

from shared.auth import Authenticator, current_principal
from shared.errors import to_status
from shared.ids import UniqueIds
from shared.metrics import Metrics
from shared.wire import passing_bytes

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


_new_request_id = UniqueIds(width=8)


class _Observation:
    """One RPC: authenticates on entry; on exit turns whatever the handler raised into a
    status and always records the call (log line and metrics)."""

    __slots__ = ("access", "code", "context", "interceptor", "metadata", "method", "request_id",
                 "started")

    def __init__(
        self, interceptor: ServerInterceptor, method: str, access: int, context: Any
    ) -> None:
        self.interceptor = interceptor
        self.method = method
        self.access = access
        self.context = context
        self.code = grpc.StatusCode.OK
        self.request_id = ""
        self.started = time.perf_counter()

    async def __aenter__(self) -> _Observation:
        self.metadata = self.context.invocation_metadata() or ()
        self.request_id = next(
            (str(value) for key, value in self.metadata if key == "x-request-id"), ""
        ) or _new_request_id()
        structlog.contextvars.bind_contextvars(request_id=self.request_id)
        return self

    def authenticate(self) -> None:
        """Inside the ``async with`` block, so a refusal is mapped and recorded like any error."""
        current_principal.set(self.interceptor._auth.authenticate(self.access, self.metadata))

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        try:
            if error is None:
                return False
            if isinstance(error, grpc.aio.AbortError):
                self.code = self.context.code() or grpc.StatusCode.UNKNOWN
            elif isinstance(error, asyncio.CancelledError):
                self.code = grpc.StatusCode.CANCELLED
            elif isinstance(error, Exception):
                await self._abort(error)
            return False
        finally:
            self.interceptor._record(self)

    async def _abort(self, error: Exception) -> None:
        code, message = to_status(error)
        self.code = code
        if code == grpc.StatusCode.INTERNAL:
            log.error("rpc_error", method=self.method, error_type=type(error).__name__,
                      error=str(error), exc_info=error)
        self.context.set_trailing_metadata((("x-request-id", self.request_id),))
        await self.context.abort(code, message)


class ServerInterceptor(grpc.aio.ServerInterceptor):
    def __init__(
        self,
        authenticator: Authenticator,
        access: dict[str, int],
        metrics: Metrics,
        quiet_methods: frozenset[str] = frozenset(),
        public_services: frozenset[str] = frozenset(),
    ) -> None:
        """``access``: each method's access from its proto options (:func:`access_map`); a
        method of ``public_services`` (health checks, reflection: no options of ours) needs no
        token, and any other method missing from ``access`` needs the admin token, so a
        servicer registered without its descriptor is closed, not open."""
        self._auth = authenticator
        self._access = access
        self._public_services = public_services
        self._metrics = metrics
        self._quiet = quiet_methods
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}
        # the log line's fields cost a peer() call and more: built only if it is written
        self._log_rpcs = log.bind().is_enabled_for(logging.INFO)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        wrapped = self._wrapped.get(details.method)
        if wrapped is None:
            handler = await continuation(details)
            if handler is None:
                return handler
            wrapped = self._wrap(handler, details.method)
            self._wrapped[details.method] = wrapped
        return wrapped

    def _wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        access = self._access.get(method)
        if access is None:
            service = method[1:].rsplit("/", 1)[0]
            access = (access_pb2.ACCESS_PUBLIC if service in self._public_services
                      else access_pb2.ACCESS_ADMIN)
        if handler.unary_unary:
            inner_unary = handler.unary_unary

            async def unary(request: Any, context: Any) -> Any:
                async with _Observation(self, method, access, context) as call:
                    call.authenticate()
                    return await inner_unary(request, context)

            return grpc.unary_unary_rpc_method_handler(
                unary, request_deserializer=handler.request_deserializer,
                response_serializer=passing_bytes(handler.response_serializer),
            )
        if handler.unary_stream:
            inner_stream = handler.unary_stream

            async def stream(request: Any, context: Any) -> AsyncIterator[Any]:
                async with _Observation(self, method, access, context) as call:
                    call.authenticate()
                    async for response in inner_stream(request, context):
                        yield response

            return grpc.unary_stream_rpc_method_handler(
                stream, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler  # client-streaming RPCs are not used by the suite

    def _record(self, call: _Observation) -> None:
        elapsed = time.perf_counter() - call.started
        code = call.code.name
        self._metrics.rpc_done(call.method, code, elapsed)
        if not self._log_rpcs:
            return
        if call.method not in self._quiet or call.code != grpc.StatusCode.OK:
            principal = current_principal.get()
            log.info(
                "rpc", method=call.method, code=code, duration_ms=round(elapsed * 1000, 3),
                peer=call.context.peer(), principal=principal.email or principal.kind,
            )
