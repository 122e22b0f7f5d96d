"""gRPC server reflection (grpc.reflection.v1 and v1alpha) against the real
server, with a client generated at test time from the grpc-proto package's
reflection.proto: list_services, file_by_filename, file_containing_symbol
for every kind of symbol, the error answers, a malformed request, the
stream limits, `--reflection off`, and a Recommend call through message
classes built only from the descriptors the server returned."""
import importlib
import shutil
import sys
import threading
import time

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from conftest import GRPC_PROTO, Server

SERVICES = {"recd.v1.Recommender", "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"}
VERSIONS = ["v1", "v1alpha"]


@pytest.fixture(scope="module")
def refl(tmp_path_factory):
    """The reflection modules of both versions, by version. Copied under
    reflection_<version>/ so that they do not hide inside the grpc package;
    the proto packages (and so the method paths) stay grpc.reflection.*."""
    from grpc_tools import protoc

    src = tmp_path_factory.mktemp("reflection_src")
    out = tmp_path_factory.mktemp("reflection_stubs")
    mods = {}
    for v in VERSIONS:
        (src / f"reflection_{v}").mkdir()
        shutil.copy(GRPC_PROTO / f"grpc/reflection/{v}/reflection.proto", src / f"reflection_{v}")
        rc = protoc.main(["protoc", f"-I{src}", f"--python_out={out}", f"--grpc_python_out={out}",
                          f"reflection_{v}/reflection.proto"])
        assert rc == 0
    sys.path.insert(0, str(out))
    for v in VERSIONS:
        mods[v] = (importlib.import_module(f"reflection_{v}.reflection_pb2"),
                   importlib.import_module(f"reflection_{v}.reflection_pb2_grpc"))
    return mods


def ask(channel, mods, *requests, timeout=10):
    """Sends requests on one ServerReflectionInfo stream; returns the responses."""
    pb2, pb2_grpc = mods
    stub = pb2_grpc.ServerReflectionStub(channel)
    return list(stub.ServerReflectionInfo(iter(requests), timeout=timeout))


def files_of(response):
    return [descriptor_pb2.FileDescriptorProto.FromString(b)
            for b in response.file_descriptor_response.file_descriptor_proto]


@pytest.mark.parametrize("version", VERSIONS)
def test_list_services(server, refl, version):
    pb2, _ = refl[version]
    (r,) = ask(server.channel, refl[version], pb2.ServerReflectionRequest(host="h", list_services=""))
    assert r.WhichOneof("message_response") == "list_services_response"
    names = [s.name for s in r.list_services_response.service]
    assert sorted(names) == sorted(SERVICES)
    assert r.valid_host == "h"
    assert r.original_request.WhichOneof("message_request") == "list_services"


@pytest.mark.parametrize("version", VERSIONS)
def test_file_by_filename_and_imports(server, refl, version):
    pb2, _ = refl[version]
    rs = ask(server.channel, refl[version],
             pb2.ServerReflectionRequest(file_by_filename="recd/v1/recommender.proto"),
             pb2.ServerReflectionRequest(file_by_filename="grpc/health/v1/health.proto"),
             pb2.ServerReflectionRequest(file_by_filename=f"grpc/reflection/{version}/reflection.proto"))
    assert len(rs) == 3
    rec = files_of(rs[0])
    assert [f.name for f in rec] == ["recd/v1/recommender.proto"]
    assert rec[0].package == "recd.v1"
    assert "Recommend" in [m.name for m in rec[0].service[0].method]
    assert [f.name for f in files_of(rs[1])] == ["grpc/health/v1/health.proto"]
    assert files_of(rs[2])[0].package == f"grpc.reflection.{version}"


def symbols_of(file_descriptor):
    """Every symbol protobuf's descriptor pool would find in a file (python's
    own descriptors of the stubs, compiled by grpc_tools), by kind."""
    out = []

    def enums(scope, enum_types):
        for e in enum_types:
            out.append(("enum", e.full_name))
            # Enum values live in the scope around their enum.
            out.extend(("enum value", f"{scope}{v.name}") for v in e.values)

    def messages(msgs):
        for m in msgs:
            out.append(("message", m.full_name))
            out.extend(("field", f.full_name) for f in m.fields)
            out.extend(("oneof", o.full_name) for o in m.oneofs)
            enums(m.full_name + ".", m.enum_types)
            messages(m.nested_types)

    pkg = file_descriptor.package + "."
    messages(file_descriptor.message_types_by_name.values())
    enums(pkg, file_descriptor.enum_types_by_name.values())
    for s in file_descriptor.services_by_name.values():
        out.append(("service", s.full_name))
        out.extend(("method", m.full_name) for m in s.methods)
    return out


@pytest.mark.parametrize("version", VERSIONS)
def test_file_containing_every_symbol(server, refl, pb, version):
    pb2, _ = refl[version]
    expected = []
    for fd in (pb.rec.DESCRIPTOR, pb.health.DESCRIPTOR):
        name = "recd/v1/recommender.proto" if fd.package == "recd.v1" else "grpc/health/v1/health.proto"
        expected += [(kind, sym, name) for kind, sym in symbols_of(fd)]
    kinds = {k for k, _, _ in expected}
    assert kinds >= {"message", "field", "enum", "enum value", "service", "method"}
    assert ("method", "recd.v1.Recommender.Recommend", "recd/v1/recommender.proto") in expected
    assert ("enum value", "grpc.health.v1.HealthCheckResponse.SERVING",
            "grpc/health/v1/health.proto") in expected
    rs = ask(server.channel, refl[version],
             *[pb2.ServerReflectionRequest(file_containing_symbol=s) for _, s, _ in expected])
    assert len(rs) == len(expected)
    for (kind, sym, name), r in zip(expected, rs):
        assert r.WhichOneof("message_response") == "file_descriptor_response", (kind, sym, r)
        assert files_of(r)[0].name == name, (kind, sym)
        assert r.original_request.file_containing_symbol == sym


@pytest.mark.parametrize("version", VERSIONS)
def test_not_found_and_unsupported_keep_the_stream(server, refl, version):
    pb2, _ = refl[version]
    rs = ask(server.channel, refl[version],
             pb2.ServerReflectionRequest(file_by_filename="no/such.proto"),
             pb2.ServerReflectionRequest(file_containing_symbol="recd.v1.NoSuchThing"),
             pb2.ServerReflectionRequest(file_containing_symbol=".recd.v1.RecommendRequest"),
             pb2.ServerReflectionRequest(file_containing_extension=pb2.ExtensionRequest(
                 containing_type="recd.v1.RecommendRequest", extension_number=100)),
             pb2.ServerReflectionRequest(file_containing_extension=pb2.ExtensionRequest(
                 containing_type="recd.v1.Nothing", extension_number=1)),
             pb2.ServerReflectionRequest(all_extension_numbers_of_type="recd.v1.NoSuchType"),
             pb2.ServerReflectionRequest(all_extension_numbers_of_type="recd.v1.RecommendRequest"),
             pb2.ServerReflectionRequest(host="only a host"),
             pb2.ServerReflectionRequest(list_services="*"))
    assert len(rs) == 9
    for r in rs[:6]:
        assert r.WhichOneof("message_response") == "error_response", r
        assert r.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0], r
        assert r.error_response.error_message
    assert "recd.v1.NoSuchThing" in rs[1].error_response.error_message
    assert rs[6].WhichOneof("message_response") == "all_extension_numbers_response"
    assert rs[6].all_extension_numbers_response.base_type_name == "recd.v1.RecommendRequest"
    assert list(rs[6].all_extension_numbers_response.extension_number) == []
    assert rs[7].error_response.error_code == grpc.StatusCode.UNIMPLEMENTED.value[0]
    assert rs[7].valid_host == "only a host"
    assert len(rs[8].list_services_response.service) == len(SERVICES)


def open_stream(stub, requests, pb2, timeout):
    """Starts a ServerReflectionInfo call whose first request is list_services
    and returns it once that is answered. A stream that just ended frees its
    room a moment after its client sees the end: RESOURCE_EXHAUSTED is retried
    for up to 5 s."""
    deadline = time.monotonic() + 5
    while True:
        call = stub.ServerReflectionInfo(requests(), timeout=timeout)
        try:
            assert next(call).WhichOneof("message_response") == "list_services_response"
            return call
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.RESOURCE_EXHAUSTED or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def raw_stream(channel, version, *messages, timeout=10):
    fn = channel.stream_stream(f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
                               request_serializer=None, response_deserializer=None)
    return list(fn(iter(messages), timeout=timeout))


@pytest.mark.parametrize("payload", [
    b"\x22\x05recd",          # file_containing_symbol longer than the message
    b"\x3a\x02\xc3\x28",      # list_services that is not UTF-8
    b"\x22\x02\xc3\x28",      # file_containing_symbol that is not UTF-8
    b"\x0a\x01\xff\x3a\x00",  # host that is not UTF-8
    b"\xff\xff\xff",          # no protobuf at all
])
@pytest.mark.parametrize("version", VERSIONS)
def test_malformed_request_ends_the_stream(server, refl, version, payload):
    pb2, _ = refl[version]
    good = pb2.ServerReflectionRequest(list_services="").SerializeToString()
    with pytest.raises(grpc.RpcError) as e:
        raw_stream(server.channel, version, good, payload, good)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # The server goes on answering.
    assert len(raw_stream(server.channel, version, good)) == 1


def test_oversized_request(server):
    with pytest.raises(grpc.RpcError) as e:
        raw_stream(server.channel, "v1", b"\x22" + b"\xff\xff\xff\x02" + b"x" * (5 << 20))
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_half_close_without_requests(server):
    assert raw_stream(server.channel, "v1") == []


def test_streams_are_bounded_and_deadlines_end_them(server, refl):
    """recd serve allows 4 streaming calls at once: four open reflection
    streams make a fifth RESOURCE_EXHAUSTED; their deadline ends them and
    frees the room."""
    pb2, pb2_grpc = refl["v1"]
    stub = pb2_grpc.ServerReflectionStub(server.channel)
    hold = threading.Event()

    def one_then_wait():
        yield pb2.ServerReflectionRequest(list_services="")
        hold.wait(30)

    held = [open_stream(stub, one_then_wait, pb2, 3) for _ in range(4)]
    with pytest.raises(grpc.RpcError) as e:
        ask(server.channel, refl["v1"], pb2.ServerReflectionRequest(list_services=""))
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    for call in held:
        with pytest.raises(grpc.RpcError) as e:
            next(call)
        assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    hold.set()
    open_stream(stub, lambda: iter([pb2.ServerReflectionRequest(list_services="")]), pb2, 10)


def test_client_cancel_frees_the_stream(server, refl):
    pb2, pb2_grpc = refl["v1"]
    stub = pb2_grpc.ServerReflectionStub(server.channel)
    done = threading.Event()

    def one_then_wait():
        yield pb2.ServerReflectionRequest(list_services="")
        done.wait(30)

    for _ in range(6):  # more than the 4 streams at once: each cancel must free one
        open_stream(stub, one_then_wait, pb2, 20).cancel()
    done.set()


@pytest.mark.parametrize("version", VERSIONS)
def test_recommend_from_reflected_descriptors_only(server, refl, shop, version):
    """A client that knows nothing of recd but the reflection protocol: it
    learns the service, builds the message classes from the returned
    FileDescriptorProtos and calls Recommend."""
    pb2, _ = refl[version]
    (listed,) = ask(server.channel, refl[version], pb2.ServerReflectionRequest(list_services=""))
    assert "recd.v1.Recommender" in [s.name for s in listed.list_services_response.service]
    (r,) = ask(server.channel, refl[version],
               pb2.ServerReflectionRequest(file_containing_symbol="recd.v1.Recommender"))
    pool = descriptor_pool.DescriptorPool()
    for fd in reversed(files_of(r)):  # imports come after the file: add them first
        pool.Add(fd)
    service = pool.FindServiceByName("recd.v1.Recommender")
    method = service.methods_by_name["Recommend"]
    if hasattr(message_factory, "GetMessageClass"):
        request_class = message_factory.GetMessageClass(method.input_type)
        response_class = message_factory.GetMessageClass(method.output_type)
    else:  # python3-protobuf 3.21 (Debian 12)
        factory = message_factory.MessageFactory(pool)
        request_class = factory.GetPrototype(method.input_type)
        response_class = factory.GetPrototype(method.output_type)
    user = sorted(shop.bought)[0]
    call = server.channel.unary_unary(f"/{service.full_name}/{method.name}",
                                      request_serializer=request_class.SerializeToString,
                                      response_deserializer=response_class.FromString)
    resp = call(request_class(user_id=user, k=5), timeout=10)
    items = [i.item_id for i in resp.items]
    assert len(items) == 5 and len(set(items)) == 5
    assert set(items) <= shop.items and not set(items) & shop.bought[user]
    strategy = pool.FindEnumTypeByName("recd.v1.Strategy")
    assert strategy.values_by_number[resp.strategy].name == "PERSONALIZED"


def test_reflection_off(model_dir, tmp_path, refl, pb):
    s = Server(model_dir, tmp_path, "--reflection", "off")
    try:
        for v in VERSIONS:
            pb2, _ = refl[v]
            with pytest.raises(grpc.RpcError) as e:
                ask(s.channel, refl[v], pb2.ServerReflectionRequest(list_services=""))
            assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
        health = pb.health_grpc.HealthStub(s.channel).Check(pb.health.HealthCheckRequest(), timeout=10)
        assert health.status == pb.health.HealthCheckResponse.SERVING
        assert "reflection=off" in s.output()
    finally:
        assert s.stop() == 0


def test_reflection_flag_is_checked(model_dir):
    from conftest import run
    p = run("serve", "--model", model_dir, "--reflection", "maybe", check=False)
    assert p.returncode == 2 and "--reflection is on or off" in p.stderr
    assert "--reflection on|off" in run("serve", "--help").stdout
