"""The public HTML pages as a real browser shows them: headless Chromium (Debian's `chromium`).

Each test serves the app over real HTTP on 127.0.0.1 (an ephemeral port) and runs Chromium as
a subprocess with --dump-dom, so what is checked is the DOM after the browser has parsed the
page and, for /docs, after Swagger UI's JavaScript has run with every other host unreachable.
With JavaScript off --dump-dom prints nothing, so that run reads the DOM over the DevTools
protocol instead. The data comes from the shipped table (agegate/data/jurisdictions.csv). Without
Chromium the tests fail; they never skip.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

CHROMIUM = Path("/usr/bin/chromium")
BROWSER_TIMEOUT = 90  # seconds for one Chromium run; a cold start takes a few
FLAGS = (
    "--headless",
    "--no-sandbox",  # the tests run as root in CI
    "--disable-gpu",
    "--disable-quic",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr: a failing assertion shows Chromium's output, not ours."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class Page(HTMLParser):
    """The parts of a dumped DOM the tests look at."""

    def __init__(self, dom: str) -> None:
        super().__init__(convert_charrefs=True)
        self.html_lang: str | None = None
        self.scripts = 0
        self.captions: list[str] = []
        self.column_headers: list[str] = []
        self.rows: list[list[str]] = []
        self.paragraphs: list[str] = []
        self.data_paths: list[str] = []  # Swagger UI: one per rendered operation
        self.opblocks = 0
        self._cell: list[str] | None = None
        self._column_header = False
        self._caption: list[str] | None = None
        self._paragraph: list[str] | None = None
        self.feed(dom)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        classes = (attributes.get("class") or "").split()
        if tag == "html":
            self.html_lang = attributes.get("lang")
        elif tag == "script":
            self.scripts += 1
        elif tag == "caption":
            self._caption = []
        elif tag == "p":
            self._paragraph = []
        elif tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []
            self._column_header = tag == "th" and attributes.get("scope") == "col"
        if "opblock" in classes:
            self.opblocks += 1
        if "opblock-summary-path" in classes and attributes.get("data-path"):
            self.data_paths.append(attributes["data-path"] or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "caption" and self._caption is not None:
            self.captions.append(_squash(self._caption))
            self._caption = None
        elif tag == "p" and self._paragraph is not None:
            self.paragraphs.append(_squash(self._paragraph))
            self._paragraph = None
        elif tag in ("td", "th") and self._cell is not None:
            text = _squash(self._cell)
            if self._column_header:
                self.column_headers.append(text)
            elif self.rows:
                self.rows[-1].append(text)
            self._cell = None

    def handle_data(self, data: str) -> None:
        for parts in (self._cell, self._caption, self._paragraph):
            if parts is not None:
                parts.append(data)

    def row_for(self, code: str) -> list[str]:
        """The body row whose Code cell is `code`: [name, code, age, basis, changes]."""
        matches = [row for row in self.rows if len(row) > 1 and row[1] == code]
        assert len(matches) == 1, f"expected one row for {code}, found {matches}"
        return matches[0]


def _squash(parts: list[str]) -> str:
    return " ".join("".join(parts).split())


def installed_chromium() -> Path:
    """Debian's Chromium; called inside each test so a missing browser fails it (not an error)."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests need Debian's Chromium. "
            "Install it with `apt-get install -y chromium` (.ci/run does)."
        )
    return CHROMIUM


@pytest.fixture
def serve() -> Iterator[Callable[[Flask], str]]:
    """serve(app) → the base URL of `app` served over HTTP on 127.0.0.1; stopped afterwards."""
    running: list[tuple[BaseWSGIServer, threading.Thread]] = []

    def start(app: Flask) -> str:
        server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_QuietHandler)
        thread = threading.Thread(target=server.serve_forever, name="browser-test-server")
        thread.start()
        running.append((server, thread))
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server, thread in running:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


def browse(chromium: Path, url: str, workdir: Path, *flags: str) -> str:
    """Open `url` in a fresh headless Chromium profile; return the DOM it dumps."""
    workdir.mkdir(parents=True, exist_ok=True)
    profile = workdir / "profile"
    command = [
        str(chromium),
        *FLAGS,
        f"--user-data-dir={profile}",
        *flags,
        "--dump-dom",
        url,
    ]
    started = time.monotonic()
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=BROWSER_TIMEOUT, check=False
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0 and result.stdout.strip(), (
        f"chromium exited {result.returncode} after {elapsed:.1f}s on {url}\n"
        f"command: {' '.join(command)}\nstderr:\n{result.stderr[-4000:]}"
    )
    return result.stdout


class DevTools:
    """A headless Chromium driven over --remote-debugging-pipe (the DevTools protocol).

    For what --dump-dom cannot do: with scripts disabled it prints nothing, so the DOM is
    read with DOM.getOuterHTML, which runs no page script.
    """

    def __init__(self, chromium: Path, workdir: Path, *flags: str) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.log = workdir / "chromium.log"
        # Chromium reads commands on fd 3 and writes replies on fd 4. Move our ends of the
        # pipes above 9 first so bash's redirections cannot clobber them.
        to_browser, self._commands = os.pipe()
        self._replies, from_browser = os.pipe()
        child_in = fcntl.fcntl(to_browser, fcntl.F_DUPFD_CLOEXEC, 10)
        child_out = fcntl.fcntl(from_browser, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(to_browser)
        os.close(from_browser)
        command = [
            str(chromium),
            *FLAGS,
            f"--user-data-dir={workdir / 'profile'}",
            "--remote-debugging-pipe",
            *flags,
        ]
        launch = f'exec "$0" "$@" 3<&{child_in} 4>&{child_out} {child_in}<&- {child_out}>&-'
        try:
            with self.log.open("wb") as log:
                self._process = subprocess.Popen(
                    ["/bin/bash", "-c", launch, *command],
                    pass_fds=(child_in, child_out),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                )
        except BaseException:
            os.close(self._commands)
            os.close(self._replies)
            raise
        finally:
            os.close(child_in)
            os.close(child_out)
        self._buffer = b""
        self._next_id = 0

    def __enter__(self) -> DevTools:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if self._process.poll() is None:
                self._send("Browser.close")
            self._process.wait(timeout=15)
        except (OSError, subprocess.TimeoutExpired):
            self._process.kill()
            self._process.wait()
        finally:
            os.close(self._commands)
            os.close(self._replies)

    def dom(self, url: str) -> str:
        """Open `url` in a new tab, wait for its load event, return its serialised DOM."""
        target = self._call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self._call("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        self._call("Page.enable", session=session)
        navigation = self._call("Page.navigate", {"url": url}, session=session)
        assert "errorText" not in navigation, f"{url}: {navigation['errorText']}"
        self._receive(
            lambda m: m.get("sessionId") == session and m.get("method") == "Page.loadEventFired"
        )
        root = self._call("DOM.getDocument", {"depth": 1}, session=session)["root"]
        (html,) = [node for node in root["children"] if node["nodeName"] == "HTML"]
        outer: str = self._call("DOM.getOuterHTML", {"nodeId": html["nodeId"]}, session=session)[
            "outerHTML"
        ]
        self._call("Target.closeTarget", {"targetId": target})
        return outer

    def _send(self, method: str, params: dict[str, Any] | None = None, **extra: str) -> int:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}, **extra}
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        return self._next_id

    def _call(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> dict[str, Any]:
        sent = self._send(method, params, **({"sessionId": session} if session else {}))
        reply = self._receive(lambda m: m.get("id") == sent)
        assert "error" not in reply, f"{method}: {reply['error']}"
        result: dict[str, Any] = reply["result"]
        return result

    def _receive(self, wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        deadline = time.monotonic() + BROWSER_TIMEOUT
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                message: dict[str, Any] = json.loads(raw)
                if wanted(message):
                    return message
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([self._replies], [], [], max(remaining, 0))
            chunk = os.read(self._replies, 1 << 16) if ready else b""
            assert chunk, (
                f"chromium {'stopped answering' if ready else 'timed out'}; "
                f"its log:\n{self.log.read_text(errors='replace')[-4000:]}"
            )
            self._buffer += chunk


def _assert_png(path: Path) -> None:
    assert path.is_file(), f"Chromium wrote no screenshot at {path}"
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n"), f"{path} is not a PNG"
    assert len(data) > 5 * 1024, f"{path} is only {len(data)} bytes: a blank page?"


@pytest.fixture
def seeded_app(app_factory: Callable[..., Flask]) -> Flask:
    return app_factory(seed_jurisdictions=True)


def test_minimum_ages_page_shows_the_shipped_table_in_a_browser(
    serve: Callable[[Flask], str], seeded_app: Flask, tmp_path: Path
) -> None:
    chromium = installed_chromium()
    screenshot = tmp_path / "minimum-ages.png"
    dom = browse(
        chromium,
        serve(seeded_app) + "/minimum-ages",
        tmp_path / "browser",
        f"--screenshot={screenshot}",
        "--window-size=1280,2000",
    )
    page = Page(dom)

    assert page.html_lang == "en"
    assert page.scripts == 0, "the public page must work without JavaScript"
    assert len(page.captions) == 1
    assert page.captions[0].startswith("Minimum age by country and region")
    assert page.column_headers == [
        "Country or region",
        "Code",
        "Minimum age",
        "Legal basis",
        "Scheduled changes",
    ]
    assert page.row_for("DE")[0] == "Germany"
    assert page.row_for("DE")[2] == "16"
    assert page.row_for("CA-QC")[0] == "Quebec (Canada)"
    assert page.row_for("CA-QC")[2] == "14"
    assert any(
        "Everywhere not listed, the minimum age is 13." in paragraph
        for paragraph in page.paragraphs
    ), page.paragraphs
    _assert_png(screenshot)


def test_minimum_ages_page_reads_the_same_with_javascript_off(
    serve: Callable[[Flask], str], seeded_app: Flask, tmp_path: Path
) -> None:
    chromium = installed_chromium()
    url = serve(seeded_app) + "/minimum-ages"
    with_script = Page(browse(chromium, url, tmp_path / "with-js"))
    with DevTools(chromium, tmp_path / "no-js", "--blink-settings=scriptEnabled=false") as browser:
        # First prove the switch took: this page's script would replace "off" with "on".
        probe = browser.dom(
            "data:text/html,<p id=state>off</p>"
            "<script>document.getElementById('state').textContent='on'</script>"
        )
        without_script = Page(browser.dom(url))

    assert Page(probe).paragraphs == ["off"], "JavaScript was not disabled"
    assert without_script.row_for("DE")[2] == "16"
    assert without_script.row_for("CA-QC")[2] == "14"
    assert without_script.rows == with_script.rows
    assert without_script.captions == with_script.captions


def test_api_docs_render_every_operation_without_internet(
    serve: Callable[[Flask], str], app: Flask, tmp_path: Path
) -> None:
    chromium = installed_chromium()
    screenshot = tmp_path / "docs.png"
    dom = browse(
        chromium,
        serve(app) + "/docs",
        tmp_path / "browser",
        "--virtual-time-budget=10000",
        # No host but the test server resolves: the docs must not need the internet.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        f"--screenshot={screenshot}",
        "--window-size=1280,2000",
    )
    page = Page(dom)

    assert page.opblocks > 0, f"Swagger UI rendered no operations:\n{dom[-2000:]}"
    assert "/v1/jurisdictions/resolve" in page.data_paths, page.data_paths
    assert "/healthz" in page.data_paths, page.data_paths
    _assert_png(screenshot)
