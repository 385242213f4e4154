"""gunicorn's threaded (gthread) worker, with slow clients kept off its threads.

Stock gthread hands a connection to a thread once its first byte arrives; the
thread then blocks reading the request head and body for as long as the client
takes, so a few dozen clients trickling bytes (slowloris) hold every thread and
the service stops answering.  Here:

- the worker's main loop (one selector, no thread) reads each request's head,
  and a small body whole, before any thread is involved, and closes a
  connection whose head has not arrived within HEAD_TIMEOUT;
- in a thread, every blocking socket operation has a timeout (IO_TIMEOUT), and
  a body still streaming must keep a minimum pace (BODY_GRACE, BODY_MIN_RATE),
  so a client trickling a large body holds a thread for seconds, not days.

It also spreads kept-alive connections over the processes (ACCEPT_HEAD_START):
a connection stays where it was accepted, and stock gthread let the first
process to wake take every one.

Used by infra/gunicorn.conf.py (`worker_class`); nothing in the application
imports this module.  It leans on gthread internals (TConn, the poller, the
parser's unreader) of the locked gunicorn version; tests/test_serving.py runs
it against real sockets.
"""

from __future__ import annotations

import errno
import json
import re
import selectors
import socket
import time
import uuid
from functools import partial

from gunicorn import util
from gunicorn.workers.gthread import ThreadWorker

# Seconds for a whole request head (and a small body) to arrive once a connection is readable.
# A real client sends its head in one packet; ten seconds covers a slow mobile link with ease.
HEAD_TIMEOUT = 10.0
# A head past this is refused (431): bearer tokens and cookies are a few KiB.
MAX_HEAD_BYTES = 64 * 1024
# Bodies up to this size (with a Content-Length) are read by the main loop too, so a client
# trickling a JSON body holds no thread.  Bounded memory: at most this much per connection.
PREREAD_BODY_BYTES = 64 * 1024
# Any one blocking send or recv in a thread: a client that stops reading or sending is dropped.
IO_TIMEOUT = 30.0
# A body read in a thread may take BODY_GRACE seconds plus one second per BODY_MIN_RATE bytes
# received; 4 KiB/s is below any real uplink (a 100 MiB upload may take 7 hours at that pace).
BODY_GRACE = 20.0
BODY_MIN_RATE = 4096

# Requests served on one kept-alive connection before the server closes it (after answering), as nginx's
# `keepalive_requests` does.  A connection stays with the process that accepted it, so a few busy clients (an
# integration, a load balancer's pooled connections) could otherwise load one process while another idles;
# reconnecting every few hundred requests spreads them again.  A client reopens as HTTP/1.1 allows.
KEEPALIVE_REQUESTS = 200

# A process holding connections lets the others take a new one first: every process's selector wakes for the same
# pending connection, and one that already holds n waits n × ACCEPT_HEAD_START (at most ACCEPT_HEAD_START_MAX)
# before it accepts, so the process holding fewest usually wins.  Without it the first process to wake took
# them all: eight kept-alive integrations landed eight on one process and none on the other, which then idled
# while the first queued on one core.  A lone process never waits (nothing to spread over).
ACCEPT_HEAD_START = 0.003
ACCEPT_HEAD_START_MAX = 0.025

# The blank line after the last field (leading empty lines, which RFC 9112 lets a server skip, never end a head).
_HEAD_END = re.compile(rb"[^\r\n]\r?\n\r?\n")
_CONTENT_LENGTH = re.compile(rb"^content-length[ \t]*:[ \t]*(\d{1,15})[ \t]*\r?$", re.I | re.M)
# A body announced by these is left to the thread: its length is unknown, or the client waits
# for "100 Continue" before sending it.
_NO_PREREAD = re.compile(rb"^(?:transfer-encoding|expect)[ \t]*:", re.I | re.M)
# gunicorn answers what it cannot parse (a request line over 4 KiB, a malformed header...) with an HTML page of
# its own; the gateway's errors are always problem+json (its code and wording, never the offending input).
_PARSE_ERRORS = {
    400: ("BAD_REQUEST", "The HTTP request could not be parsed."),
    403: ("FORBIDDEN", "The request was refused."),
    414: ("URI_TOO_LONG", "The request line (method, path and query string) is longer than 4 KiB."),
    417: ("EXPECTATION_FAILED", "The Expect header cannot be met."),
    431: ("HEADERS_TOO_LARGE", "The request's header fields are too large."),
    501: ("NOT_IMPLEMENTED", "The request uses a transfer coding the server does not support."),
}


def problem_answer(status: int, reason: str) -> bytes:
    """A complete HTTP response (connection closed after it) with a problem+json body for `status`."""
    code, detail = _PARSE_ERRORS.get(status, ("INTERNAL_ERROR", "An unexpected error occurred."))
    request_id = uuid.uuid4().hex
    body = json.dumps({"type": f"/problems/{code.lower().replace('_', '-')}", "title": reason, "status": status,
                       "detail": detail, "code": code, "request_id": request_id, "errors": []}).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/problem+json\r\n"
            f"X-Request-ID: {request_id}\r\nX-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode("latin-1") + body


def write_problem(sock, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn.util.write_error, answering problem+json (`mesg` can quote the request, so it is not sent)."""
    util.write_nonblock(sock, problem_answer(status_int, reason))


class GuardedSocket:
    """A client socket whose blocking operations time out and whose body reads keep a pace."""

    def __init__(self, sock: socket.socket):
        self._sock = sock
        self._started = 0.0
        self._received = 0

    def __getattr__(self, name):
        return getattr(self._sock, name)

    def fileno(self) -> int:
        """The descriptor (selectors register the wrapper)."""
        return self._sock.fileno()

    def setblocking(self, flag: bool) -> None:
        """Blocking means blocking for at most IO_TIMEOUT."""
        self._sock.settimeout(IO_TIMEOUT if flag else 0.0)

    def start_request(self) -> None:
        """A request is being handled: its body pace is measured from now."""
        self._started, self._received = time.monotonic(), 0

    def recv(self, size: int, *flags) -> bytes:
        """Receive, failing with socket.timeout once the body falls behind its minimum pace."""
        timeout = self._sock.gettimeout()
        if not self._started or timeout == 0.0:
            data = self._sock.recv(size, *flags)
        else:
            allowed = self._started + BODY_GRACE + self._received / BODY_MIN_RATE - time.monotonic()
            if allowed <= 0:
                raise TimeoutError("the client is sending its body too slowly")
            self._sock.settimeout(min(allowed, timeout or IO_TIMEOUT))
            try:
                data = self._sock.recv(size, *flags)
            finally:
                self._sock.settimeout(timeout)
        self._received += len(data)
        return data


def _body_to_preread(fields: bytes | bytearray) -> int:
    """How much of the body the main loop reads too: a small body of known length, else none."""
    if _NO_PREREAD.search(fields) is not None:
        return 0
    length = _CONTENT_LENGTH.search(fields)
    if length is None or int(length.group(1)) > PREREAD_BODY_BYTES:
        return 0
    return int(length.group(1))


class GatewayThreadWorker(ThreadWorker):
    """gthread, reading request heads (and small bodies) in the main loop; see the module docstring."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.awaiting_heads: dict = {}  # conn -> deadline, in deadline order (one timeout for all)
        self.accept_held_until: float | None = None  # accepting paused for the others' head start until then

    def accept(self, listener):
        """gthread's, after giving processes that hold fewer connections a head start (ACCEPT_HEAD_START)."""
        head_start = min(ACCEPT_HEAD_START_MAX, ACCEPT_HEAD_START * self.nr_conns) if self.cfg.workers > 1 else 0
        if not head_start:
            super().accept(listener)
            return
        self.accept_held_until = time.monotonic() + head_start
        self.set_accept_enabled(False)

    def set_accept_enabled(self, enabled):
        """gthread's main loop turns accepting back on every turn; not before the head start is over."""
        if enabled and self.accept_held_until is not None:
            return
        super().set_accept_enabled(enabled)

    def wait_for_and_dispatch_events(self, timeout):
        """Wake when a head start ends (not at the loop's one-second heartbeat) and take the connection if no
        other process has: one accept per listener, which finds nothing once another process took it."""
        if self.accept_held_until is None:
            super().wait_for_and_dispatch_events(timeout)
            return
        super().wait_for_and_dispatch_events(max(0.0, min(timeout, self.accept_held_until - time.monotonic())))
        if self.accept_held_until is not None and time.monotonic() >= self.accept_held_until:
            self.accept_held_until = None
            self.set_accept_enabled(self.nr_conns < self.worker_connections)
            for listener in self.sockets if self._accepting else ():
                ThreadWorker.accept(self, listener)

    def init_process(self):
        """In the worker process: gunicorn's own error pages become problem+json, then gthread's start."""
        util.write_error = write_problem
        super().init_process()

    def enqueue_req(self, conn):
        """Every route to a thread (new, kept-alive, read-ahead) passes here: heads first."""
        if getattr(conn, "head_ready", False):
            conn.head_ready = False
            return super().enqueue_req(conn)
        if not isinstance(conn.sock, GuardedSocket):
            conn.sock = GuardedSocket(conn.sock)
        conn.head = bytearray(conn.parser.unreader.take_buffered() if conn.parser is not None else b"")
        conn.head_scanned, conn.head_wanted = 0, None
        if not self._head_progress(conn):
            conn.sock.setblocking(False)
            self.awaiting_heads[conn] = time.monotonic() + HEAD_TIMEOUT
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_head_readable, conn))
        return None

    def _head_progress(self, conn) -> bool:
        """Dispatch (or refuse) the connection once its head, and a small body, are in; False: read on."""
        if conn.head_wanted is None:
            # Search only what is new (and 4 bytes back, for an end split across reads).
            end = _HEAD_END.search(conn.head, max(0, conn.head_scanned - 4))
            conn.head_scanned = len(conn.head)
            if end is None or end.start() > MAX_HEAD_BYTES:
                if end is not None or len(conn.head) > MAX_HEAD_BYTES:
                    self._drop(conn, answer=problem_answer(431, "Request Header Fields Too Large"))
                    return True
                return False
            conn.head_wanted = end.end() + _body_to_preread(conn.head[:end.start() + 1])
        if len(conn.head) < conn.head_wanted:
            return False
        self._forget(conn)
        conn.prefetched, conn.head = bytes(conn.head), None
        conn.data_ready = conn.head_ready = True
        self.enqueue_req(conn)
        return True

    def _on_head_readable(self, conn, _sock):
        try:
            data = conn.sock._sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(conn)
            return
        conn.head.extend(data)
        self._head_progress(conn)

    def _forget(self, conn) -> None:
        if self.awaiting_heads.pop(conn, None) is not None:
            try:
                self.poller.unregister(conn.sock)
            except (KeyError, ValueError, OSError):
                pass

    def _drop(self, conn, answer: bytes = b"") -> None:
        self._forget(conn)
        if answer:
            try:
                conn.sock._sock.send(answer)
            except OSError:
                pass
        self.nr_conns -= 1
        conn.close()

    def murder_pending(self):
        """Also close connections whose head did not arrive in time (called on every loop turn)."""
        super().murder_pending()
        now = time.monotonic()
        while self.awaiting_heads:
            conn, deadline = next(iter(self.awaiting_heads.items()))
            if deadline > now:
                break
            self._drop(conn)

    def handle_request(self, req, conn):
        """gthread's, closing the connection after its KEEPALIVE_REQUESTS-th request (`Connection: close`)."""
        conn.requests_served = getattr(conn, "requests_served", 0) + 1
        if conn.requests_served >= KEEPALIVE_REQUESTS:
            req.must_close = True
        return super().handle_request(req, conn)

    def handle(self, conn):
        """In the thread: hand the bytes read by the main loop to gunicorn's parser, then serve."""
        prefetched = getattr(conn, "prefetched", None)
        conn.prefetched = None
        try:
            conn.sock.setblocking(True)
            conn.init()
        except OSError as error:
            if error.errno not in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN):
                self.log.debug("Socket error before the request: %s", error)
            return False
        if prefetched:
            conn.parser.unreader.unread(prefetched)
        conn.sock.start_request()
        return super().handle(conn)
