"""A tiny HTTP/1.1 client over a raw socket for tests that stream bodies the way attackers do.

It sends the body from a generator (chunked, or raw after a Content-Length), looks for the server's
answer before every piece, and stops sending as soon as one arrives: the client stays small and the
test learns how much the server read before it decided.
"""

from __future__ import annotations

import http.client
import json
import select
import socket
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass
class Answer:
    status: int
    body: object  # the decoded JSON, or the raw bytes
    sent: int  # body bytes sent before the answer came


def stream(port: int, method: str, path: str, chunks: Iterable[bytes] = (), *, headers: dict | None = None,
           chunked: bool = True, content_length: int | None = None, timeout: float = 120) -> Answer:
    """Send a request whose body comes from `chunks`; stop sending once the server answers."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        if chunked:
            lines.append("Transfer-Encoding: chunked")
        elif content_length is not None:
            lines.append(f"Content-Length: {content_length}")
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        sent, finished = 0, True
        for chunk in chunks:
            if select.select([sock], [], [], 0)[0]:
                finished = False
                break  # answered already: stop sending
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
            except (BrokenPipeError, ConnectionResetError):
                finished = False
                break
            sent += len(chunk)
        if finished and chunked:
            sock.sendall(b"0\r\n\r\n")
        response = http.client.HTTPResponse(sock)
        response.begin()
        raw = response.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw
        return Answer(response.status, body, sent)
    finally:
        sock.close()
