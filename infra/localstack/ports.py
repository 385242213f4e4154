"""Free TCP ports for local throwaway services (tests, dev stack)."""

from __future__ import annotations

import socket


def find_free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    # Binding port 0 lets the kernel pick; there is a small race until the
    # caller binds it, which is acceptable for local test services.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
