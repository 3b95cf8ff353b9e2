"""Search answers kept serialized, and a registration that sends them as they are.

A serialized protobuf message is its fields one after another, and two serialized messages of
one type joined are the message holding both's fields (repeated fields appended in order). So
a search answer is kept as the bytes of its page of records (each record's bytes made once per
index), its page token and its total; each call joins the bytes of its own provenance (the
data's age changes from call to call), and gRPC sends the result without parsing it again: the
searches' response serializer lets bytes through.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import grpc
from google.protobuf.message import Message

from services.catalog.records import Record

__all__ = ["record_bytes", "sending_bytes"]


def record_bytes(response: type[Message], field: str, build: Callable[[Record], Message],
                 record: Record) -> bytes:
    """``record`` as the serialized ``field`` (a repeated message field) of ``response``."""
    return response(**{field: [build(record)]}).SerializeToString()


def _passing_bytes(serialize: Callable[[Any], bytes]) -> Callable[[Any], bytes]:
    def serializer(response: Any) -> bytes:
        return response if isinstance(response, bytes) else serialize(response)

    return serializer


class _BytesThrough:
    """Stands for the server while generated code registers a service: the handlers of
    ``methods`` get a response serializer that lets bytes through."""

    def __init__(self, server: grpc.aio.Server, methods: Collection[str]) -> None:
        self._server = server
        self._methods = methods

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        """The generated code's own: registered below, with the changed handlers."""

    def add_registered_method_handlers(
        self, service: str, handlers: Mapping[str, grpc.RpcMethodHandler]
    ) -> None:
        changed = {
            name: grpc.unary_unary_rpc_method_handler(
                handler.unary_unary, request_deserializer=handler.request_deserializer,
                response_serializer=_passing_bytes(handler.response_serializer),
            ) if name in self._methods else handler
            for name, handler in handlers.items()
        }
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(service, changed),))
        self._server.add_registered_method_handlers(service, changed)


def sending_bytes(
    add: Callable[[Any, Any], None], methods: Collection[str]
) -> Callable[[Any, grpc.aio.Server], None]:
    """``add`` (a generated ``add_…Servicer_to_server``) such that the unary ``methods`` may
    answer with their serialized response."""

    def add_to(servicer: Any, server: grpc.aio.Server) -> None:
        add(servicer, _BytesThrough(server, methods))

    return add_to
