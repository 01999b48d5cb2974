"""Registering the master's gRPC methods so that unparsable requests get a clear answer.

gRPC parses a unary request before any handler runs and answers a parse failure with UNKNOWN
and the exception's class name. :func:`add_master_service` registers every method of
``substrate.v1.Master`` (read from the proto descriptor, so new methods are picked up) and gives
the unary ones a parser that cannot fail: a request whose bytes are no valid message is answered
INVALID_ARGUMENT with the reason, before the servicer sees it. Streamed requests are parsed
while a handler reads them; the handlers in :mod:`substrate.master.service` catch
:class:`~google.protobuf.message.DecodeError` there.
"""
from __future__ import annotations

from typing import Any, Callable

import grpc
from google.protobuf import message_factory
from google.protobuf.message import DecodeError

from substrate.v1 import pb

SERVICE = "substrate.v1.Master"


class Malformed:
    """What a unary request became when its bytes did not parse."""

    def __init__(self, type_name: str, error: DecodeError) -> None:
        self.type_name = type_name
        self.error = error


def tolerant_parser(cls) -> Callable[[bytes], Any]:
    """``cls.FromString`` that returns :class:`Malformed` instead of raising.

    Examples
    --------
    >>> parse = tolerant_parser(pb.StateRequest)
    >>> type(parse(b"")).__name__, type(parse(b"\\xff")).__name__
    ('StateRequest', 'Malformed')
    """
    def parse(data: bytes):
        try:
            return cls.FromString(data)
        except DecodeError as exc:
            return Malformed(cls.DESCRIPTOR.name, exc)
    return parse


def _refusing(handler):
    async def unary(request, context):
        if isinstance(request, Malformed):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"malformed {request.type_name}: {request.error}")
        return await handler(request, context)
    return unary


def _refusing_stream(handler):
    async def unary_stream(request, context):
        if isinstance(request, Malformed):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"malformed {request.type_name}: {request.error}")
        async for item in handler(request, context):
            yield item
    return unary_stream


def add_master_service(servicer, server) -> None:
    """Register ``servicer`` for every method of ``substrate.v1.Master`` on ``server``."""
    handlers = {}
    for method in pb.DESCRIPTOR.services_by_name["Master"].methods:
        request = message_factory.GetMessageClass(method.input_type)
        response = message_factory.GetMessageClass(method.output_type)
        fn = getattr(servicer, method.name)
        out = response.SerializeToString
        if method.client_streaming and method.server_streaming:
            handlers[method.name] = grpc.stream_stream_rpc_method_handler(
                fn, request_deserializer=request.FromString, response_serializer=out)
        elif method.client_streaming:
            handlers[method.name] = grpc.stream_unary_rpc_method_handler(
                fn, request_deserializer=request.FromString, response_serializer=out)
        elif method.server_streaming:
            handlers[method.name] = grpc.unary_stream_rpc_method_handler(
                _refusing_stream(fn), request_deserializer=tolerant_parser(request),
                response_serializer=out)
        else:
            handlers[method.name] = grpc.unary_unary_rpc_method_handler(
                _refusing(fn), request_deserializer=tolerant_parser(request),
                response_serializer=out)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    if hasattr(server, "add_registered_method_handlers"):   # grpcio >= 1.63: the fast path
        server.add_registered_method_handlers(SERVICE, handlers)
