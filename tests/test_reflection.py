"""Server reflection under both names, v1 and v1alpha, each asked through a raw stub of its
own path on a real server; and grpcurl describing the v1 service through reflection."""
from __future__ import annotations

import os
import subprocess
import sys

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2 as r

from served import Running

PATHS = {"v1": "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
         "v1alpha": "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Running(str(tmp_path_factory.mktemp("reflection")))
    yield s
    s.stop()


def ask(server, version: str, *requests: r.ServerReflectionRequest) -> list[r.ServerReflectionResponse]:
    """`requests` on the reflection stream at `version`'s path (v1's messages are v1alpha's
    on the wire, field for field)."""
    with grpc.insecure_channel(server.target) as channel:
        call = channel.stream_stream(PATHS[version], request_serializer=r.ServerReflectionRequest.SerializeToString,
                                     response_deserializer=r.ServerReflectionResponse.FromString)
        return list(call(iter(requests), timeout=10))


def files(response: r.ServerReflectionResponse) -> list[descriptor_pb2.FileDescriptorProto]:
    return [descriptor_pb2.FileDescriptorProto.FromString(b)
            for b in response.file_descriptor_response.file_descriptor_proto]


@pytest.mark.parametrize("version", PATHS)
def test_each_version_lists_the_services_and_describes_offerds(server, version):
    listed, decide, request = ask(server, version, r.ServerReflectionRequest(list_services=""),
                                  r.ServerReflectionRequest(file_containing_symbol="offerd.v1.DecisionService"),
                                  r.ServerReflectionRequest(file_containing_symbol="offerd.v1.DecideRequest"))
    assert sorted(s.name for s in listed.list_services_response.service) == [
        "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection",
        "offerd.v1.AdminService", "offerd.v1.DecisionService", "offerd.v1.ProfileService"]
    proto = files(decide)[0]
    assert proto.name == "offerd/v1/offerd.proto" and proto.package == "offerd.v1"
    assert [m.name for m in proto.service[0].method][:2] == ["Decide", "DecideStream"]
    assert files(request)[0] == proto


@pytest.mark.parametrize("version", PATHS)
def test_each_version_describes_both_reflection_services(server, version):
    v1, v1alpha = ask(server, version,
                      r.ServerReflectionRequest(file_containing_symbol="grpc.reflection.v1.ServerReflection"),
                      r.ServerReflectionRequest(file_containing_symbol="grpc.reflection.v1alpha.ServerReflection"))
    (one,), (alpha,) = files(v1), files(v1alpha)
    assert (one.name, one.package, alpha.package) == ("grpc/reflection/v1/reflection.proto", "grpc.reflection.v1",
                                                      "grpc.reflection.v1alpha")
    method = one.service[0].method[0]
    assert (method.input_type, method.output_type) == (".grpc.reflection.v1.ServerReflectionRequest",
                                                       ".grpc.reflection.v1.ServerReflectionResponse")
    assert [m.name for m in one.message_type] == [m.name for m in alpha.message_type]


def test_an_unknown_symbol_is_not_found_on_both(server):
    for version in PATHS:
        (answer,) = ask(server, version, r.ServerReflectionRequest(file_containing_symbol="offerd.v1.Nope"))
        assert answer.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]


def test_grpcurl_describes_the_v1_reflection_service(server):
    grpcurl = os.path.join(os.path.dirname(sys.executable), "grpcurl")
    got = subprocess.run([grpcurl, "-plaintext", server.target, "describe", "grpc.reflection.v1.ServerReflection"],
                         capture_output=True, text=True, timeout=30)
    assert got.returncode == 0, got.stderr
    assert "grpc.reflection.v1.ServerReflection is a service" in got.stdout
    assert "rpc ServerReflectionInfo ( stream .grpc.reflection.v1.ServerReflectionRequest )" in got.stdout
