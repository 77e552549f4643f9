"""A local HTTP server that answers the way a broken or hostile deletion service would.

The first segment of the request path picks the misbehaviour (tests point an `http` target
at `{base}/<misbehaviour>/{account_id}`); every request received is recorded, so a test can
show that a second instance (another origin) was never asked anything.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

HUGE = 2**30  # the body length the `huge` answer claims, and would send if it were read


class Misbehaving:
    def __init__(self, other: str = "http://127.0.0.1:9") -> None:
        self.other = other  # where answers that point elsewhere point
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # method, path, headers
        self.bytes_sent = 0  # by the `huge` answer, before the client hung up
        self.stopping = threading.Event()

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        if length:
            handler.rfile.read(length)
        self.requests.append((handler.command, handler.path, dict(handler.headers.items())))
        parts = urlsplit(handler.path)
        kind = parts.path.strip("/").split("/")[0]
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if kind == "ok":
            self._json(handler, 200, {"deleted": 2})
        elif kind == "other-origin":
            self._json(handler, 202, {"status_url": f"{self.other}/status/x"})
        elif kind == "other-location":
            self._json(handler, 202, {}, {"Location": f"{self.other}/status/x"})
        elif kind == "redirect":
            self._json(handler, 307, {}, {"Location": f"{self.other}/ok/x"})
        elif kind == "file-status":
            self._json(handler, 202, {"status_url": "file:///etc/passwd"})
        elif kind == "file-location":
            self._json(handler, 202, {}, {"Location": "file:///etc/passwd"})
        elif kind == "status-redirect":
            self._json(handler, 202, {"status_url": "/redirect/x"})
        elif kind == "status-unknown":
            self._json(handler, 202, {"status_url": "/unknown/x"})
        elif kind == "unknown":
            self._json(handler, 200, {"status": "failed", "deleted": 5})
        elif kind == "nested":
            self._raw(handler, 200, b'{"deleted": ' + b"[" * 30_000 + b"]" * 30_000 + b"}")
        elif kind == "bad-count":
            self._json(handler, 200, {"deleted": query.get("n", "lots")})
        elif kind == "huge-count":
            self._json(handler, 200, {"deleted": 10**30})
        elif kind == "retry-after":
            self._json(handler, 503, {}, {"Retry-After": query["value"]})
        elif kind == "huge":
            self._huge(handler)
        elif kind == "silent":
            self.stopping.wait()
        elif kind == "drip":
            self._drip(handler)
        else:
            self._json(handler, 404, {})

    def _json(
        self,
        handler: BaseHTTPRequestHandler,
        status: int,
        body: dict[str, Any],
        headers: dict[str, str] | None = None,
    ) -> None:
        self._raw(handler, status, json.dumps(body).encode(), headers)

    def _raw(
        self,
        handler: BaseHTTPRequestHandler,
        status: int,
        raw: bytes,
        headers: dict[str, str] | None = None,
    ) -> None:
        handler.send_response(status)
        for name, value in {
            **(headers or {}),
            "Content-Type": "application/json",
            "Content-Length": str(len(raw)),
        }.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(raw)

    def _huge(self, handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(HUGE))
        handler.end_headers()
        chunk = b" " * 65536
        try:
            while self.bytes_sent < HUGE and not self.stopping.is_set():
                handler.wfile.write(chunk)
                self.bytes_sent += len(chunk)
        except OSError:  # the client hung up: what it had read was enough to refuse
            return

    def _drip(self, handler: BaseHTTPRequestHandler) -> None:
        """A status line, then one header byte at a time, never finishing."""
        try:
            handler.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            handler.wfile.flush()
            while not self.stopping.wait(0.2):
                handler.wfile.write(b"a")
                handler.wfile.flush()
        except OSError:
            return


@contextmanager
def misbehaving_server(other: str = "http://127.0.0.1:9") -> Iterator[tuple[Misbehaving, str]]:
    """A running Misbehaving server and its base URL; stopped (hung answers released) after."""
    state = Misbehaving(other)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            state.answer(self)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        state.stopping.set()  # releases the answers that hang
        server.shutdown()
        server.server_close()
