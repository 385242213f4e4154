"""A local HTTP receiver for sink and webhook tests: records every POST, can be slow or fail on cue."""

from __future__ import annotations

import http.server
import threading
import time


class Receiver:
    """Threaded HTTP server on 127.0.0.1 that records requests; `script` gives (status, delay) per hit."""

    def __init__(self, script=None):
        self.hits: list[dict] = []
        self.script = list(script or [])
        self.first_hit = threading.Event()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.hits.append({"path": self.path, "headers": dict(self.headers), "body": body})
                receiver.first_hit.set()
                status, delay = receiver.script.pop(0) if receiver.script else (200, 0)
                time.sleep(delay)
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
