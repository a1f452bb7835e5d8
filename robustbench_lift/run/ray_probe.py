"""A quick check that a Ray cluster answers at an address, before Ray is imported.

``ray.init(address=...)`` on an address where no Ray cluster answers retries for about
20 s, prints a warning line per retry from Ray's C++ core and then exits the process. A
TCP connection alone does not prove much either: behind a transparent proxy (as on some
CI machines) every address accepts connections. So the probe speaks the protocol Ray's
head node speaks, gRPC over HTTP/2: it opens a connection, sends one gRPC request and
accepts the address when the answer is an HTTP/2 response with status 200 (what every
gRPC server answers, even for a method it does not know). Anything else (refused,
timed out, closed, HTTP/1 or another status) is a one-line :class:`UserError` within
the timeout. Standard library only; no Ray import.
"""

from __future__ import annotations

import socket
import struct
import time

from robustbench_lift.errors import UserError

__all__ = ["DEFAULT_TIMEOUT", "check_ray_address", "split_address"]

#: Seconds the whole probe may take (connect, request, answer).
DEFAULT_TIMEOUT = 2.0

_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_DATA, _HEADERS, _SETTINGS, _GOAWAY = 0x0, 0x1, 0x4, 0x7
_END_STREAM, _END_HEADERS, _PADDED, _PRIORITY = 0x1, 0x4, 0x8, 0x20
# HPACK static table entries 8..14 are ":status" with these values (RFC 7541, appendix A).
_STATIC_STATUS = {8: 200, 9: 204, 10: 206, 11: 304, 12: 400, 13: 404, 14: 500}


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` or ``ray://host:port`` -> (host, port); one-line UserError otherwise."""
    target = address.split("://", 1)[-1]
    host, separator, port = target.rpartition(":")
    if not separator or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"ray_address {address!r} must look like host:port, ray://host:port or auto")
    return host.strip("[]") or "127.0.0.1", int(port)


def _frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def _string(text: str) -> bytes:
    data = text.encode("ascii")
    if len(data) >= 127:
        raise ValueError("header value too long for the probe")
    return bytes([len(data)]) + data


def _request(authority: str) -> bytes:
    """The connection preface, empty SETTINGS and one gRPC POST (HPACK without Huffman)."""
    block = b"\x83\x86"  # :method POST, :scheme http (static table 3 and 6)
    block += b"\x04" + _string("/robustbench_lift.Probe/Ping")  # :path, literal (name index 4)
    block += b"\x01" + _string(authority)  # :authority, literal (name index 1)
    block += b"\x0f\x10" + _string("application/grpc")  # content-type (name index 31)
    block += b"\x00" + _string("te") + _string("trailers")
    return _PREFACE + _frame(_SETTINGS, 0, 0) + _frame(_HEADERS, _END_HEADERS | _END_STREAM, 1, block)


def _status(block: bytes) -> int | None:
    """The ``:status`` of a response header block when it comes first and unencoded
    (servers send it as a static-table index); None when it cannot be read."""
    if not block:
        return None
    first = block[0]
    if first & 0x80:
        return _STATIC_STATUS.get(first & 0x7F)
    # A literal with an indexed ":status" name: 01xxxxxx (6-bit index) or 0000/0001xxxx (4-bit).
    index = first & 0x3F if first & 0x40 else first & 0x0F
    if index not in _STATIC_STATUS or len(block) < 2 or block[1] & 0x80:  # Huffman-coded value
        return None
    length = block[1] & 0x7F
    value = block[2 : 2 + length]
    return int(value) if value.isdigit() else None


def _read_exactly(connection: socket.socket, count: int, deadline: float) -> bytes:
    data = b""
    while len(data) < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no answer")
        connection.settimeout(remaining)
        chunk = connection.recv(count - len(data))
        if not chunk:
            raise ConnectionError("connection closed")
        data += chunk
    return data


def _response_status(connection: socket.socket, deadline: float) -> int | None:
    """Reads frames until the response headers of stream 1; returns their status."""
    first = _read_exactly(connection, 9, deadline)
    if first.startswith(b"HTTP/"):
        raise ConnectionError("an HTTP/1 server answered, not Ray")
    header = first
    for _ in range(64):
        length = int.from_bytes(header[:3], "big")
        kind, flags = header[3], header[4]
        stream = int.from_bytes(header[5:9], "big") & 0x7FFFFFFF
        if length > 1 << 20:
            raise ConnectionError("not an HTTP/2 server")
        payload = _read_exactly(connection, length, deadline) if length else b""
        if kind == _GOAWAY:
            raise ConnectionError("the server closed the connection (HTTP/2 GOAWAY)")
        if kind == _HEADERS and stream == 1:
            if flags & _PADDED:
                payload = payload[1 : len(payload) - payload[0]]
            if flags & _PRIORITY:
                payload = payload[5:]
            return _status(payload)
        header = _read_exactly(connection, 9, deadline)
    raise ConnectionError("no response headers")


def check_ray_address(address: str, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Raises a one-line UserError unless a gRPC server (a Ray head node) answers at ``address``.

    Args:
        address: ``host:port`` or ``ray://host:port`` (``auto`` is not probed).
        timeout: seconds the whole check may take.

    Raises:
        UserError: the address is malformed, refuses or drops the connection, does not
            answer within ``timeout``, or answers as something other than a gRPC server.
    """
    host, port = split_address(address)
    deadline = time.monotonic() + timeout
    try:
        with socket.create_connection((host, port), timeout=timeout) as connection:
            connection.sendall(_request(f"{host}:{port}"))
            status = _response_status(connection, deadline)
    except (OSError, ConnectionError, TimeoutError, ValueError) as error:
        reason = (
            "no answer"
            if isinstance(error, (TimeoutError, socket.timeout))
            else (getattr(error, "strerror", None) or str(error) or type(error).__name__)
        )
        raise UserError(f"cannot reach the Ray cluster at {address}: {reason} (checked for {timeout:g} s)") from None
    if status is not None and status != 200:
        raise UserError(
            f"cannot reach the Ray cluster at {address}: a server answers there but it is not a Ray cluster (HTTP status {status})"
        )
