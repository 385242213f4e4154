"""Slow clients cannot pin the gateway (infra/gunicorn.conf.py, gateway/serving.py): 50 connections trickle
a request head or body one byte per second while other clients are still answered, and the server itself
closes the tricklers once their time is up."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request
from collections import Counter

import pytest

from gateway import serving
from tests.factories import make_tenant

# One database (tests/conftest.py): slow clients against gunicorn; no database changes how a socket is read.
pytestmark = pytest.mark.one_database

HEAD_TRICKLERS, SMALL_BODY_TRICKLERS, LARGE_BODY_TRICKLERS = 20, 20, 10
CONNECTIONS_TO_SPREAD = 8


class Trickler:
    """One connection that sends `prefix` at once, then one more byte every second."""

    def __init__(self, port: int, prefix: bytes):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.sendall(prefix)
        self.sock.setblocking(False)
        self.opened = time.monotonic()
        self.ended_at: float | None = None
        self.answer = b""

    def tick(self) -> None:
        """Send one byte, or notice that the server answered or closed the connection."""
        if self.ended_at is not None:
            return
        try:
            data = self.sock.recv(4096)
        except BlockingIOError:
            data = None
        except OSError:
            data = b""
        if data is None:
            try:
                self.sock.send(b"x")
                return
            except BlockingIOError:
                return
            except OSError:
                data = b""
        self.ended_at = time.monotonic()
        self.answer += data + (self._rest() if data else b"")

    def _rest(self) -> bytes:
        # The server may write an answer's head and body separately: under load the first recv can hold
        # the head alone, so read on until the server closes (or a few quiet seconds).
        rest = b""
        self.sock.settimeout(5)
        try:
            while chunk := self.sock.recv(4096):
                rest += chunk
        except OSError:
            pass
        return rest

    def close(self) -> None:
        self.sock.close()


def timed_get(url: str, headers: dict | None = None) -> tuple[int, float]:
    started = time.monotonic()
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=60) as response:
        response.read()
        return response.status, time.monotonic() - started


@pytest.mark.slow
def test_fifty_slow_connections_do_not_stop_other_clients(start_gateway, db):
    gateway = start_gateway(workers=2)
    tenant = make_tenant(db)
    key = tenant.api_key

    def post_head(length: int) -> bytes:
        return (f"POST /v1/requests HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n{{").encode()

    tricklers = {
        "head": [Trickler(gateway.port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
                 for _ in range(HEAD_TRICKLERS)],
        "small body": [Trickler(gateway.port, post_head(2000)) for _ in range(SMALL_BODY_TRICKLERS)],
        "large body": [Trickler(gateway.port, post_head(1024 * 1024)) for _ in range(LARGE_BODY_TRICKLERS)],
    }
    everyone = [t for group in tricklers.values() for t in group]
    stop = threading.Event()

    def trickle():
        deadline = time.monotonic() + 90  # bounded, whatever happens to the test
        while not stop.is_set() and time.monotonic() < deadline:
            for t in everyone:
                t.tick()
            stop.wait(1.0)

    pump = threading.Thread(target=trickle, daemon=True)
    pump.start()
    try:
        time.sleep(3)  # the large-body tricklers now hold threads; the others wait in the selector
        latencies = []
        for _ in range(5):
            status, seconds = timed_get(f"{gateway.url}/healthz")
            assert status == 200
            latencies.append(seconds)
            status, seconds = timed_get(f"{gateway.url}/v1/requests", {"Authorization": f"Bearer {key}"})
            assert status == 200
            latencies.append(seconds)
        print(f"\n10 requests answered beside 50 slow connections; slowest {max(latencies):.2f} s")
        # Cut only once HEAD_TIMEOUT has passed (under load the ten requests above may take longer than that).
        assert all(t.ended_at is None or t.ended_at - t.opened >= serving.HEAD_TIMEOUT - 0.5
                   for t in tricklers["head"]), "head tricklers were cut before their time"

        # The server, not the test, ends the tricklers: heads and small bodies within HEAD_TIMEOUT, large
        # bodies once they fall behind BODY_GRACE + size / BODY_MIN_RATE.
        limit = serving.BODY_GRACE + 25
        while time.monotonic() - everyone[0].opened < limit and any(t.ended_at is None for t in everyone):
            time.sleep(0.5)
        for name, group in tricklers.items():
            lasted = [t.ended_at - t.opened for t in group if t.ended_at is not None]
            assert len(lasted) == len(group), f"{name}: {len(group) - len(lasted)} still open after {limit} s"
            print(f"{name} tricklers closed by the server after {min(lasted):.1f}-{max(lasted):.1f} s")
        for t in tricklers["head"] + tricklers["small body"]:
            assert t.ended_at - t.opened < serving.HEAD_TIMEOUT + 5
        for t in tricklers["large body"]:
            if t.answer:  # answered (the body stopped arriving in time) rather than just closed
                status_line = t.answer.split(b"\r\n", 1)[0]
                assert status_line.split()[1] in (b"400", b"408"), status_line
                body = json.loads(t.answer.split(b"\r\n\r\n", 1)[1] or b"{}")
                assert body.get("status") in (400, 408)
        status, _ = timed_get(f"{gateway.url}/healthz")
        assert status == 200
    finally:
        stop.set()
        pump.join()
        for t in everyone:
            t.close()


def test_served_workers_run_nicer_than_their_arbiter(start_gateway):
    """What infra/gunicorn.conf.py's post_fork does, seen on a running gateway: the web workers yield the cores
    to the relay and the RQ workers (started at the test process's priority) when both want them."""
    import os

    gateway = start_gateway(workers=2)
    arbiter = os.getpriority(os.PRIO_PROCESS, gateway.process.pid)
    workers = gateway.worker_pids()
    assert len(workers) == 2
    assert [os.getpriority(os.PRIO_PROCESS, pid) for pid in workers] == [min(19, arbiter + 5)] * 2


def test_a_kept_alive_connection_is_closed_after_its_quota_of_requests(start_gateway):
    """A connection stays with the process that accepted it; closing it after KEEPALIVE_REQUESTS lets a busy
    client's next connection land on another process (nginx's keepalive_requests)."""
    import http.client

    gateway = start_gateway(workers=2)
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
    local_ports = set()
    try:
        for served in range(1, serving.KEEPALIVE_REQUESTS + 2):
            connection.request("GET", "/healthz")
            response = connection.getresponse()
            response.read()
            assert response.status == 200
            local_ports.add(connection.sock.getsockname()[1] if connection.sock else None)
            closing = response.getheader("Connection", "").lower() == "close"
            assert closing == (served == serving.KEEPALIVE_REQUESTS), served
    finally:
        connection.close()
    # The 201st request went on a new connection (http.client reopens after "Connection: close").
    assert len(local_ports - {None}) == 2


def test_kept_alive_connections_spread_evenly_over_the_processes(start_gateway):
    """A connection stays with the process that accepted it, so eight integrations on kept-alive connections
    must land four and four: a process holding more waits a little before it accepts (ACCEPT_HEAD_START), and
    the other, woken by the same connection, takes it."""
    import http.client

    gateway = start_gateway(workers=2)
    connections = []
    try:
        for _ in range(CONNECTIONS_TO_SPREAD):
            connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
            connection.request("GET", "/healthz")
            response = connection.getresponse()
            response.read()
            assert response.status == 200
            connections.append(connection)
        held = Counter(gateway.serving_pid(c.sock.getsockname()[1]) for c in connections)
    finally:
        for connection in connections:
            connection.close()
    assert None not in held
    assert sorted(held.values()) == [CONNECTIONS_TO_SPREAD // 2] * 2, held
