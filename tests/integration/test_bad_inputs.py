"""Bad inputs against the real server, from malformed protobuf to HTTP/2
abuse on raw sockets: every case gets a clean gRPC status (or, for garbage
below gRPC, a closed connection), and after every case the server still
answers Health/Check and Recommend. At the end it must still be running and
exit 0 on SIGTERM.

Protobuf is written by hand here so that it can be wrong in exact ways;
HTTP/2 goes through the h2 library (python3-h2) when the frames are valid and
through plain socket writes when they are not."""
import socket
import struct
import time

import grpc
import h2.config
import h2.connection
import h2.events
import pytest

from conftest import Server, raw_call

R = "/recd.v1.Recommender/"
HEALTH = "/grpc.health.v1.Health/Check"
BAD = b"\xff\xfe"  # never valid UTF-8
NUL = b"u1\x00x"  # read cut short at the NUL, "u1\x00x" would be member u1
CODE = grpc.StatusCode


# --- protobuf by hand ------------------------------------------------------

def varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def ld(field, payload):
    """A length-delimited field (string, bytes, message)."""
    return varint(field << 3 | 2) + varint(len(payload)) + payload


def vi(field, value):
    """A varint field."""
    return varint(field << 3) + varint(value)


def f32(field, value):
    return varint(field << 3 | 5) + struct.pack("<f", value)


def f32_bits(field, bits):
    return varint(field << 3 | 5) + struct.pack("<I", bits)


REC = ld(1, b"u1") + vi(2, 5)  # a valid RecommendRequest


def event(user=b"u1", item=b"i1", type_=1):
    return ld(1, ld(1, user) + ld(2, item) + vi(3, type_))


# --- the table ---------------------------------------------------------------
# (name, method, request bytes, expected code, words in the details). Streaming
# methods are called as such; "OK" cases check the response with a function.

def rejected(words):
    """RecordEvents answers OK and rejects the bad event by index."""
    def check(pb, body):
        r = pb.rec.RecordEventsResponse.FromString(body)
        assert r.accepted == 0 and len(r.rejected) == 1 and r.rejected[0].index == 0, r
        assert words in r.rejected[0].reason, r
    return check


HUGE = 100_000
CASES = [
    # malformed protobuf
    ("varint of 11 bytes", "Recommend", b"\x10" + b"\xff" * 10 + b"\x01", CODE.INVALID_ARGUMENT, "malformed"),
    ("varint cut short", "Recommend", ld(1, b"u1") + b"\x10\xff", CODE.INVALID_ARGUMENT, "malformed"),
    ("string field as varint", "Recommend", b"\x08\x05" + vi(2, 5), CODE.INVALID_ARGUMENT, "malformed"),
    ("uint32 field as fixed64", "SimilarItems", ld(1, b"i1") + b"\x11" + b"\0" * 8, CODE.INVALID_ARGUMENT, "malformed"),
    ("length beyond the message", "SimilarItems", b"\x0a\x10abc", CODE.INVALID_ARGUMENT, "malformed"),
    ("length of 4 GiB", "Rerank", b"\x12\xff\xff\xff\xff\x0f" + b"x" * 8, CODE.INVALID_ARGUMENT, "malformed"),
    ("wire type 7", "GetModelInfo", b"\x0f\x00", CODE.INVALID_ARGUMENT, "malformed"),
    ("field number 0", "GetChurnScore", b"\x02\x01x", CODE.INVALID_ARGUMENT, "malformed"),
    ("nested garbage", "RecordEvents", ld(1, b"\xff\xff\xff"), CODE.INVALID_ARGUMENT, "malformed"),
    ("nested string cut short", "SetItemAvailability", ld(1, b"\x0a\x0ai1"), CODE.INVALID_ARGUMENT, "malformed"),
    ("nested message as varint", "SetItemBoosts", b"\x08\x01", CODE.INVALID_ARGUMENT, "malformed"),
    ("garbage health request", "Health", b"\xff" * 7, CODE.INVALID_ARGUMENT, "malformed"),
    ("garbage stream request", "StreamCampaignTargets", b"\x2a\x09ab", CODE.INVALID_ARGUMENT, "malformed"),
    # invalid UTF-8 in every string field of every RPC
    ("utf-8 Recommend.user_id", "Recommend", ld(1, BAD) + vi(2, 5), CODE.INVALID_ARGUMENT, "UTF-8"),
    ("utf-8 Recommend.context_item_ids", "Recommend", REC + ld(3, BAD), CODE.INVALID_ARGUMENT, "UTF-8"),
    ("utf-8 Recommend.exclude_item_ids", "Recommend", REC + ld(4, BAD), CODE.INVALID_ARGUMENT, "UTF-8"),
    ("utf-8 Recommend.category", "Recommend", REC + ld(7, BAD), CODE.INVALID_ARGUMENT, "UTF-8"),
    ("utf-8 SimilarItems.item_id", "SimilarItems", ld(1, BAD) + vi(2, 5), CODE.INVALID_ARGUMENT, "UTF-8"),
    ("utf-8 SimilarItems.item_ids", "SimilarItems", ld(1, b"i1") + vi(2, 5) + ld(3, BAD), CODE.INVALID_ARGUMENT, "UTF-8"),
    ("utf-8 Event.user_id", "RecordEvents", event(user=BAD), "OK", rejected("UTF-8")),
    ("utf-8 Event.item_id", "RecordEvents", event(item=BAD), "OK", rejected("UTF-8")),
    ("utf-8 ItemAvailability.item_id", "SetItemAvailability", ld(1, ld(1, BAD) + vi(2, 1)), CODE.INVALID_ARGUMENT, "UTF-8"),
    ("utf-8 ItemBoost.item_id", "SetItemBoosts", ld(1, ld(1, BAD) + f32(2, 2.0)), CODE.INVALID_ARGUMENT, "UTF-8"),
    ("utf-8 Rerank.user_id", "Rerank", ld(1, BAD) + ld(2, b"i1"), CODE.INVALID_ARGUMENT, "UTF-8"),
    ("utf-8 Rerank.candidate_item_ids", "Rerank", ld(1, b"u1") + ld(2, BAD), CODE.INVALID_ARGUMENT, "UTF-8"),
    ("utf-8 Rerank.context_item_ids", "Rerank", ld(2, b"i1") + ld(3, BAD), CODE.INVALID_ARGUMENT, "UTF-8"),
    ("utf-8 ChurnScoreRequest.user_id", "GetChurnScore", ld(1, BAD), CODE.INVALID_ARGUMENT, "UTF-8"),
    ("utf-8 CampaignTargets.segments", "StreamCampaignTargets", ld(3, BAD), CODE.INVALID_ARGUMENT, "UTF-8"),
    ("utf-8 CampaignTargets.tiers", "StreamCampaignTargets", ld(4, BAD), CODE.INVALID_ARGUMENT, "UTF-8"),
    ("utf-8 CampaignTargets.item_id", "StreamCampaignTargets", ld(5, BAD), CODE.INVALID_ARGUMENT, "UTF-8"),
    ("utf-8 CampaignTargets.category", "StreamCampaignTargets", ld(6, BAD), CODE.INVALID_ARGUMENT, "UTF-8"),
    ("utf-8 HealthCheckRequest.service", "Health", ld(1, BAD), CODE.NOT_FOUND, "unknown service"),
    # a NUL byte in a string field: refused, naming the field, never read cut at the NUL
    ("NUL Recommend.user_id", "Recommend", ld(1, NUL) + vi(2, 5), CODE.INVALID_ARGUMENT, "user_id contains a NUL byte"),
    ("NUL Recommend.context_item_ids", "Recommend", REC + ld(3, b"i1") + ld(3, NUL), CODE.INVALID_ARGUMENT, "context_item_ids[1] contains a NUL"),
    ("NUL Recommend.category", "Recommend", REC + ld(7, NUL), CODE.INVALID_ARGUMENT, "category contains a NUL"),
    ("NUL SimilarItems.item_id", "SimilarItems", ld(1, NUL) + vi(2, 5), CODE.INVALID_ARGUMENT, "item_id contains a NUL"),
    ("NUL Event.user_id", "RecordEvents", event() + event(user=NUL), CODE.INVALID_ARGUMENT, "events[1].user_id contains a NUL"),
    ("NUL Event.item_id", "RecordEvents", event(item=NUL), CODE.INVALID_ARGUMENT, "events[0].item_id contains a NUL"),
    ("NUL ItemAvailability.item_id", "SetItemAvailability", ld(1, ld(1, NUL) + vi(2, 1)), CODE.INVALID_ARGUMENT, "items[0].item_id contains a NUL"),
    ("NUL ItemBoost.item_id", "SetItemBoosts", ld(1, ld(1, NUL) + f32(2, 2.0)), CODE.INVALID_ARGUMENT, "boosts[0].item_id contains a NUL"),
    ("NUL Rerank.candidate_item_ids", "Rerank", ld(1, b"u1") + ld(2, NUL), CODE.INVALID_ARGUMENT, "candidate_item_ids[0] contains a NUL"),
    ("NUL ChurnScoreRequest.user_id", "GetChurnScore", ld(1, NUL), CODE.INVALID_ARGUMENT, "user_id contains a NUL"),
    ("NUL CampaignTargets.item_id", "StreamCampaignTargets", ld(5, NUL), CODE.INVALID_ARGUMENT, "item_id contains a NUL"),
    ("NUL Feedback.request_id", "RecordFeedback", ld(1, ld(1, NUL)), CODE.INVALID_ARGUMENT, "feedback[0].request_id contains a NUL"),
    ("NUL SetExperiment.salt", "SetExperiment", ld(1, NUL), CODE.INVALID_ARGUMENT, "salt contains a NUL"),
    ("NUL VariantShare.variant", "SetExperiment", ld(2, ld(1, NUL)), CODE.INVALID_ARGUMENT, "shares[0].variant contains a NUL"),
    ("NUL ForgetUser.user_id", "ForgetUser", ld(1, NUL), CODE.INVALID_ARGUMENT, "user_id contains a NUL"),
    ("NUL SetPersonalization.user_id", "SetPersonalization", ld(1, NUL), CODE.INVALID_ARGUMENT, "user_id contains a NUL"),
    # huge repeated fields: refused before any work is done
    ("100k exclude_item_ids", "Recommend", REC + ld(4, b"i1") * HUGE, CODE.INVALID_ARGUMENT, "more than 10000"),
    ("100k context_item_ids", "Recommend", REC + ld(3, b"i1") * HUGE, CODE.INVALID_ARGUMENT, "more than 10000"),
    ("100k SimilarItems seeds", "SimilarItems", ld(1, b"i1") + vi(2, 5) + ld(3, b"i1") * HUGE, CODE.INVALID_ARGUMENT, "more than 10000"),
    ("100k events", "RecordEvents", event() * HUGE, CODE.INVALID_ARGUMENT, "more than 10000"),
    ("100k availabilities", "SetItemAvailability", ld(1, ld(1, b"i1")) * HUGE, CODE.INVALID_ARGUMENT, "more than 10000"),
    ("100k boosts", "SetItemBoosts", ld(1, ld(1, b"i1") + f32(2, 2.0)) * HUGE, CODE.INVALID_ARGUMENT, "more than 10000"),
    ("100k rerank candidates", "Rerank", ld(1, b"u1") + ld(2, b"i1") * HUGE, CODE.INVALID_ARGUMENT, "more than 10000"),
    ("100k campaign segments", "StreamCampaignTargets", ld(3, b"at-risk") * HUGE, CODE.INVALID_ARGUMENT, "more than 10000"),
    # values out of range
    ("k = 2^32 - 1", "Recommend", ld(1, b"u1") + vi(2, 2**32 - 1), CODE.INVALID_ARGUMENT, "k must be"),
    ("SimilarItems k = 1001", "SimilarItems", ld(1, b"i1") + vi(2, 1001), CODE.INVALID_ARGUMENT, "k must be"),
    ("diversity NaN", "Recommend", REC + f32_bits(6, 0x7FC00000), CODE.INVALID_ARGUMENT, "diversity"),
    ("boost of infinity", "SetItemBoosts", ld(1, ld(1, b"i1") + f32_bits(2, 0x7F800000)), CODE.INVALID_ARGUMENT, "multiplier"),
    ("event type 99", "RecordEvents", event(type_=99), "OK", rejected("unknown event type")),
    ("Rerank without candidates", "Rerank", ld(1, b"u1"), CODE.INVALID_ARGUMENT, "candidate_item_ids is empty"),
    # size
    ("oversized message (5 MiB)", "SimilarItems", ld(1, b"i1") + ld(3, b"x" * (5 << 20)), CODE.RESOURCE_EXHAUSTED, ""),
]

METHODS = {"Health": HEALTH}


def path_of(method):
    return METHODS.get(method, R + method)


@pytest.fixture(scope="module")
def srv(model_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad_inputs")
    s = Server(model_dir, tmp, "--events", tmp / "events")
    yield s
    if s.proc.poll() is None:  # the last test stops it; this is for a failed run
        s.stop()


@pytest.fixture(scope="module")
def known_user(shop):
    return sorted(shop.bought)[0]


def assert_serving(srv, pb, user):
    """The server answers Health/Check and a personalized Recommend."""
    h = pb.health_grpc.HealthStub(srv.channel)
    assert h.Check(pb.health.HealthCheckRequest(), timeout=10).status == pb.health.HealthCheckResponse.SERVING
    r = pb.rec_grpc.RecommenderStub(srv.channel).Recommend(
        pb.rec.RecommendRequest(user_id=user, k=3), timeout=10)
    assert len(r.items) == 3
    assert srv.proc.poll() is None, f"server exited {srv.proc.returncode}"


@pytest.mark.parametrize("name,method,request_bytes,code,check", CASES, ids=[c[0] for c in CASES])
def test_bad_request_gets_a_clean_status(srv, pb, known_user, name, method, request_bytes, code, check):
    if method == "StreamCampaignTargets":
        fn = srv.channel.unary_stream(path_of(method), request_serializer=None,
                                      response_deserializer=None)
        call = lambda: list(fn(request_bytes, timeout=10))  # noqa: E731
    else:
        call = lambda: raw_call(srv.channel, path_of(method), request_bytes)  # noqa: E731
    if code == "OK":
        check(pb, call())
    else:
        with pytest.raises(grpc.RpcError) as e:
            call()
        assert e.value.code() == code, f"{e.value.code()}: {e.value.details()}"
        assert check in (e.value.details() or "")
    assert_serving(srv, pb, known_user)


@pytest.mark.parametrize("method", [R + "NoSuchMethod", "/grpc.health.v1.Health/Watch", "/x",
                                    "/" + "m" * 2000])
def test_unknown_method_is_unimplemented(srv, pb, known_user, method):
    with pytest.raises(grpc.RpcError) as e:
        raw_call(srv.channel, method, REC)
    assert e.value.code() == CODE.UNIMPLEMENTED
    assert_serving(srv, pb, known_user)


# --- HTTP/2 --------------------------------------------------------------------

def grpc_frame(message, declared=None):
    """A gRPC length-prefixed message; declared overrides the length prefix."""
    return b"\0" + struct.pack(">I", len(message) if declared is None else declared) + message


class H2Client:
    """One HTTP/2 connection driven by h2; outcome() reads until a stream ends."""

    def __init__(self, address):
        host, port = address.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()
        self.flush()
        self.headers = {}

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def start(self, path, body, end=True, extra=()):
        self.headers = {}
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, [(":method", "POST"), (":scheme", "http"), (":path", path),
                                     (":authority", "localhost"), ("content-type", "application/grpc"),
                                     ("te", "trailers"), *extra])
        self.conn.send_data(sid, body, end_stream=end)
        self.flush()
        return sid

    def outcome(self, sid, timeout=10):
        """("status", code, message), ("reset", error code), ("goaway", error code) or ("eof",)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            data = self.sock.recv(65536)
            if not data:
                return ("eof",)
            for ev in self.conn.receive_data(data):
                if isinstance(ev, (h2.events.ResponseReceived, h2.events.TrailersReceived)) and ev.stream_id == sid:
                    self.headers.update({k.decode(): v.decode() for k, v in ev.headers})
                elif isinstance(ev, h2.events.DataReceived):
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id == sid:
                    self.flush()
                    return ("status", int(self.headers["grpc-status"]), self.headers.get("grpc-message", ""))
                elif isinstance(ev, h2.events.StreamReset) and ev.stream_id == sid:
                    return ("reset", ev.error_code)
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    return ("goaway", ev.error_code)
            self.flush()
        raise AssertionError(f"stream {sid}: no outcome within {timeout} s")

    def close(self):
        self.sock.close()


def raw_socket(address):
    host, port = address.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=10)


def closed_by_server(sock, timeout=10):
    """Reads until the server closes the connection; True if it did in time."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
        return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def h2_frame(type_, flags, stream, payload, length=None):
    n = len(payload) if length is None else length
    return struct.pack(">I", n)[1:] + bytes([type_, flags]) + struct.pack(">I", stream) + payload


# gRPC core hands the server a NULL payload both when the stream ended inside
# a message and when no message came at all; rpc.c answers both
# INVALID_ARGUMENT ("no complete request message") rather than reading them
# as an empty message. An empty message on the wire is a 5-byte frame and
# arrives as an empty buffer, which is fine.


def test_grpc_length_prefix_longer_than_the_stream(srv, pb, known_user):
    """The length prefix says 1000 bytes, 10 come, then END_STREAM."""
    c = H2Client(srv.address)
    out = c.outcome(c.start(R + "GetModelInfo", grpc_frame(b"x" * 10, declared=1000)))
    c.close()
    assert_serving(srv, pb, known_user)
    assert out[0] in ("status", "reset"), out
    assert out[0] == "reset" or out[1] != 0, f"a truncated message was answered OK: {out}"


def test_no_request_message_at_all(srv, pb, known_user):
    """HEADERS with END_STREAM: a unary call without its request."""
    c = H2Client(srv.address)
    out = c.outcome(c.start(R + "GetModelInfo", b""))
    c.close()
    assert_serving(srv, pb, known_user)
    assert out[0] == "reset" or (out[0] == "status" and out[1] != 0), out


def test_empty_request_message_is_a_message(srv, pb, known_user):
    """The counterpart: a zero-length message (5-byte frame) is valid."""
    c = H2Client(srv.address)
    out = c.outcome(c.start(R + "GetModelInfo", grpc_frame(b"")))
    c.close()
    assert out[:2] == ("status", 0), out
    assert_serving(srv, pb, known_user)


def test_grpc_length_prefix_beyond_the_size_limit(srv, pb, known_user):
    c = H2Client(srv.address)
    out = c.outcome(c.start(R + "Recommend", grpc_frame(REC, declared=64 << 20)))
    c.close()
    assert out[0] == "reset" or (out[0] == "status" and out[1] != 0), out
    assert_serving(srv, pb, known_user)


def test_deadline_expires_before_the_request_is_complete(srv, pb, known_user):
    """grpc-timeout cannot be negative, and 1n is rounded up to a millisecond
    that a fast server beats: so the headers carry 1 ms and only 3 bytes of
    the message follow. The call ends with DEADLINE_EXCEEDED, and the same
    connection carries the next call."""
    c = H2Client(srv.address)
    sid = c.start(R + "Recommend", grpc_frame(REC)[:3], end=False, extra=[("grpc-timeout", "1m")])
    out = c.outcome(sid)
    assert out[:2] == ("status", CODE.DEADLINE_EXCEEDED.value[0]), out
    assert c.outcome(c.start(HEALTH, grpc_frame(b"")))[:2] == ("status", 0)
    c.close()
    assert_serving(srv, pb, known_user)


def test_connection_dropped_mid_message(srv, pb, known_user):
    c = H2Client(srv.address)
    c.start(R + "Recommend", grpc_frame(REC, declared=100), end=False)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
    c.close()
    assert_serving(srv, pb, known_user)


def test_many_streams_opened_and_reset(srv, pb, known_user):
    c = H2Client(srv.address)
    for _ in range(200):
        sid = c.start(R + "Recommend", grpc_frame(REC), end=False)
        c.conn.reset_stream(sid)
        c.flush()
    sid = c.start(HEALTH, grpc_frame(b""))
    assert c.outcome(sid)[:2] == ("status", 0)
    c.close()
    assert_serving(srv, pb, known_user)


@pytest.mark.parametrize("name,data", [
    ("HTTP/1.1 request", b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"),
    ("binary garbage", bytes(range(256)) * 4),
    ("frame longer than SETTINGS_MAX_FRAME_SIZE", PREFACE + h2_frame(4, 0, 0, b"") +
     h2_frame(0, 0, 1, b"x" * 64, length=(1 << 24) - 1)),
    ("SETTINGS of 7 bytes", PREFACE + h2_frame(4, 0, 0, b"\0" * 7)),
    ("WINDOW_UPDATE of 0", PREFACE + h2_frame(4, 0, 0, b"") + h2_frame(8, 0, 0, b"\0" * 4)),
    ("HEADERS with an undecodable block", PREFACE + h2_frame(4, 0, 0, b"") + h2_frame(1, 5, 1, b"\xff" * 16)),
], ids=lambda v: v if isinstance(v, str) else "")
def test_transport_garbage_closes_the_connection(srv, pb, known_user, name, data):
    s = raw_socket(srv.address)
    s.sendall(data)
    assert closed_by_server(s), f"{name}: the server kept the connection open"
    s.close()
    assert_serving(srv, pb, known_user)


def test_silent_and_half_frame_clients_do_not_block_others(srv, pb, known_user):
    """Clients that connect and send nothing, or stop inside a frame header,
    hold a connection each but no worker."""
    idle = [raw_socket(srv.address) for _ in range(20)]
    stalled = [raw_socket(srv.address) for _ in range(20)]
    for s in stalled:
        s.sendall(PREFACE + h2_frame(4, 0, 0, b"")[:5])
    for _ in range(5):
        assert_serving(srv, pb, known_user)
        time.sleep(0.2)
    for s in idle + stalled:
        s.close()
    assert_serving(srv, pb, known_user)


def server_log(srv):
    """The server's log as bytes: it holds what clients sent, not always UTF-8."""
    srv.log.flush()
    with open(srv.log.name, "rb") as f:
        return f.read()


# Status details often quote what a client sent (the Health service name,
# ids); rpc.c escapes them (quote, backslash, control and non-ASCII bytes as
# \xNN) before its logfmt line, so a newline in a request cannot forge one.
def test_request_bytes_cannot_forge_log_lines(srv, pb, known_user):
    forged = b'x"\nforged level=error msg="injected'
    with pytest.raises(grpc.RpcError) as e:
        raw_call(srv.channel, HEALTH, ld(1, forged))
    assert e.value.code() == CODE.NOT_FOUND
    assert_serving(srv, pb, known_user)
    lines = server_log(srv).split(b"\n")
    assert not [line for line in lines if line.startswith(b"forged")], "a client forged a log line"


def test_zz_server_is_alive_and_stops_cleanly(srv):
    """Last: after every case above, the server is still running and a
    SIGTERM stops it with exit code 0."""
    assert srv.proc.poll() is None, f"server exited {srv.proc.returncode}"
    rc = srv.stop()
    assert rc == 0, f"server exited {rc} after SIGTERM:\n{server_log(srv).decode(errors='replace')}"
