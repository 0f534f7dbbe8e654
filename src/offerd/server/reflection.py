"""Server reflection under both names clients use: grpc.reflection.v1 (grpcurl, Postman,
newer tools) and grpc.reflection.v1alpha (older ones).

grpcio-reflection ships only v1alpha. The v1 protocol is the same messages with the same
field numbers under another package, so v1 is served by the same servicer, its bytes read
and written with v1alpha's classes; a copy of v1alpha's file descriptor renamed to v1 is
added to the descriptor pool so that v1's own symbols can be reflected too."""
from __future__ import annotations

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection, reflection_pb2

from .guard import Refusals, guarded

V1ALPHA = reflection.SERVICE_NAME  # grpc.reflection.v1alpha.ServerReflection
V1 = "grpc.reflection.v1.ServerReflection"
V1_FILE = "grpc/reflection/v1/reflection.proto"


def _add_v1_descriptor(pool) -> None:
    """v1alpha's file descriptor renamed to v1, in `pool` (once)."""
    try:
        pool.FindFileByName(V1_FILE)
        return
    except KeyError:
        pass
    file = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(file)
    old, new = ".grpc.reflection.v1alpha.", ".grpc.reflection.v1."
    file.name, file.package = V1_FILE, "grpc.reflection.v1"
    file.ClearField("options")
    for message in file.message_type:
        for field in message.field:
            if field.type_name.startswith(old):
                field.type_name = new + field.type_name[len(old):]
    for service in file.service:
        for method in service.method:
            method.input_type = new + method.input_type[len(old):]
            method.output_type = new + method.output_type[len(old):]
    pool.Add(file)


def enable(service_names, server: grpc.aio.Server, refusals: Refusals, wrap=None) -> None:
    """Reflection of `service_names` (and of itself) on `server`, under v1 and v1alpha;
    `wrap(servicer, service name)` returns the servicer with its methods observed (observe.py;
    both names share v1alpha's figures)."""
    pool = descriptor_pool.Default()
    _add_v1_descriptor(pool)
    servicer = reflection.aio.ReflectionServicer(tuple(service_names) + (V1, V1ALPHA), pool=pool)
    if wrap is not None:
        servicer = wrap(servicer, V1ALPHA)
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo, request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString)
    methods = {"ServerReflectionInfo": handler}
    for name in (V1, V1ALPHA):
        target = guarded(server, refusals)
        target.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, methods),))
        target.add_registered_method_handlers(name, methods)
