"""Kind `http` against a real local HTTP server: signing, idempotency, 202 polling, retries,
and the containment and release hooks driven by the engine."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from flask import Flask

from agegate.remediation.targets.base import PurgeContext, TargetError
from agegate.remediation.targets.http import HttpRequest, HttpTarget, TargetPending

SECRET = b"provider-shared-secret-for-tests"


class Provider:
    """A downstream deletion API: holds data per account, checks every signature."""

    def __init__(self) -> None:
        self.data: dict[str, int] = {"acct-1": 3, "acct-2": 5}
        self.requests: list[tuple[str, str, str]] = []  # method, path, idempotency key
        self.bad_signatures = 0
        self.mode = "sync"  # sync | async | flaky | refuse
        self.pending_polls = 0
        self.failures_left = 0

    def handle(self, handler: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], dict[str, Any]]:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        message = "\n".join(
            [
                handler.command,
                handler.path,
                handler.headers["X-Agegate-Timestamp"],
                hashlib.sha256(body).hexdigest(),
            ]
        )
        expected = "v1=" + hmac.new(SECRET, message.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, handler.headers.get("X-Agegate-Signature", "")):
            self.bad_signatures += 1
            return 401, {}, {}
        self.requests.append(
            (handler.command, handler.path, handler.headers.get("Idempotency-Key", ""))
        )
        account = handler.path.rstrip("/").split("/")[-1]
        if handler.path.startswith("/hooks/broken/"):
            return 500, {}, {}
        if handler.path.startswith("/hooks/"):  # suspend / unsuspend: no data changes here
            return 200, {}, {}
        if handler.path.startswith("/status/"):
            if self.pending_polls:
                self.pending_polls -= 1
                return 200, {"Retry-After": "0"}, {"status": "pending"}
            return 200, {}, {"status": "done", "deleted": self._delete(account)}
        if self.mode == "refuse":
            return 400, {}, {"error": "no"}
        if self.mode == "flaky" and self.failures_left:
            self.failures_left -= 1
            return 503, {"Retry-After": "0"}, {}
        if self.mode == "async":
            return 202, {}, {"status_url": f"/status/{account}"}
        return 200, {}, {"deleted": self._delete(account)}

    def _delete(self, account: str) -> int:
        return self.data.pop(account, 0)


@pytest.fixture
def provider() -> Iterator[tuple[Provider, str]]:
    state = Provider()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            status, headers, body = state.handle(self)
            raw = json.dumps(body).encode()
            self.send_response(status)
            for name, value in {
                **headers,
                "Content-Type": "application/json",
                "Content-Length": str(len(raw)),
            }.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(raw)

        do_GET = do_POST = do_DELETE = _answer

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def target(base: str, **kw: Any) -> HttpTarget:
    request = HttpRequest("provider", "DELETE", f"{base}/v1/users/{{account_id}}", SECRET, 5.0)
    return HttpTarget(request, kw.get("deadline", timedelta(days=7)), 0.0)


def purge_all(t: HttpTarget, account: str, case: str = "case-1") -> int:
    purged = 0
    while True:
        gone = t.purge_batch(account, 100, PurgeContext(case, purged=purged))
        if gone == 0:
            return purged
        purged += gone


def test_a_signed_deletion_reports_what_went_and_touches_no_one_else(
    provider: tuple[Provider, str],
) -> None:
    state, base = provider
    assert purge_all(target(base), "acct-1") == 3
    assert state.data == {"acct-2": 5} and state.bad_signatures == 0
    assert state.requests == [
        ("DELETE", "/v1/users/acct-1", "case-1:provider")
    ]  # one request, keyed by case and target


def test_accepted_deletions_are_polled_until_done(provider: tuple[Provider, str]) -> None:
    state, base = provider
    state.mode, state.pending_polls = "async", 2
    t = target(base)
    for _ in range(2):
        with pytest.raises(TargetPending):
            t.purge_batch("acct-1", 100, PurgeContext("case-1"))
    assert purge_all(t, "acct-1") == 3
    assert {key for _, _, key in state.requests} == {
        "case-1:provider"
    }  # every retry is the same request


def test_pending_past_the_deadline_fails(provider: tuple[Provider, str]) -> None:
    from datetime import UTC, datetime

    state, base = provider
    state.mode, state.pending_polls = "async", 100
    t = target(base, deadline=timedelta(days=1))
    with pytest.raises(TargetError, match="still pending"):
        t.purge_batch(
            "acct-1", 100, PurgeContext("case-1", started_at=datetime.now(UTC) - timedelta(days=2))
        )


def test_server_errors_are_retryable_and_refusals_are_not_silent(
    provider: tuple[Provider, str],
) -> None:
    state, base = provider
    state.mode, state.failures_left = "flaky", 1
    with pytest.raises(TargetError, match="HTTP 503") as caught:
        target(base).purge_batch("acct-1", 100, PurgeContext("case-1"))
    assert caught.value.retry_after == 0
    assert purge_all(target(base), "acct-1") == 3
    state.mode = "refuse"
    with pytest.raises(TargetError, match="HTTP 400"):
        target(base).purge_batch("acct-2", 100, PurgeContext("case-2"))
    assert state.data == {"acct-2": 5}


def test_unreachable_service_is_a_target_error() -> None:
    with pytest.raises(TargetError, match="reaching the service"):
        target("http://127.0.0.1:9").purge_batch("acct-1", 100, PurgeContext("c"))


def targets_file(tmp_path: Any, base: str, *, contain: str, release: str | None = None) -> Any:
    """One signed http target and its hooks at /hooks/<contain|release>/<account>."""

    def hook(name: str, path: str) -> str:
        url = f"{base}/hooks/{path}/{{account_id}}"
        return f'[{{name: {name}, kind: http, method: POST, url: "{url}", secret_env: PROVIDER_SECRET}}]'

    url = f"{base}/v1/users/{{account_id}}"
    text = (
        "targets:\n"
        f'  - {{name: model-provider, kind: http, method: DELETE, url: "{url}", secret_env: PROVIDER_SECRET}}\n'
        f"hooks:\n  contain: {hook('suspend', contain)}\n"
    )
    if release:
        text += f"  release: {hook('unsuspend', release)}\n"
    path = tmp_path / "targets.yaml"
    path.write_text(text)
    return path


def test_the_engine_runs_hooks_and_purges_through_http(
    provider: tuple[Provider, str],
    app_factory: Callable[..., Flask],
    make_key: Callable[..., dict[str, str]],
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from agegate.remediation.setup import make_worker

    state, base = provider
    monkeypatch.setenv("PROVIDER_SECRET", SECRET.decode())
    targets = targets_file(tmp_path, base, contain="suspend", release="unsuspend")
    app = app_factory(targets_file=str(targets))
    headers = make_key("flags:write", "cases:read", "cases:write")
    client, worker = app.test_client(), make_worker(app)
    purged = client.post(
        "/v1/accounts/acct-1/flags",
        json={"reason": "other", "confidence": "confirmed"},
        headers=headers,
    ).get_json()["case"]
    dismissed = client.post(
        "/v1/accounts/acct-2/flags",
        json={"reason": "other", "confidence": "suspected"},
        headers=headers,
    ).get_json()["case"]
    while worker.run_once():
        pass
    client.post(
        f"/v1/cases/{dismissed['id']}/dismiss", json={"reason": "adult verified"}, headers=headers
    )
    while worker.run_once():
        pass
    done = client.get(f"/v1/cases/{purged['id']}", headers=headers).get_json()
    assert done["state"] == "completed"
    assert [(t["name"], t["found"], t["purged"], t["remaining"]) for t in done["targets"]] == [
        ("model-provider", 3, 3, 0)
    ]
    paths = [path for _, path, _ in state.requests]
    assert paths.count("/hooks/suspend/acct-1") == 1 and paths.count("/hooks/suspend/acct-2") == 1
    assert "/hooks/unsuspend/acct-2" in paths and "/hooks/unsuspend/acct-1" not in paths
    assert state.data == {"acct-2": 5} and state.bad_signatures == 0
    events = [
        e["event"]
        for e in client.get(f"/v1/cases/{dismissed['id']}", headers=headers).get_json()["timeline"]
    ]
    assert events[-2:] == ["case.dismissed", "case.released"]


def test_a_failing_containment_hook_is_retried_then_fails_the_case(
    provider: tuple[Provider, str],
    app_factory: Callable[..., Flask],
    make_key: Callable[..., dict[str, str]],
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import time

    from agegate.remediation.setup import make_worker

    state, base = provider
    monkeypatch.setenv("PROVIDER_SECRET", SECRET.decode())
    targets = targets_file(tmp_path, base, contain="broken")
    app = app_factory(targets_file=str(targets), max_attempts=2, retry_backoff_cap_seconds=1)
    headers = make_key("flags:write", "cases:read")
    client, worker = app.test_client(), make_worker(app)
    case = client.post(
        "/v1/accounts/acct-1/flags",
        json={"reason": "other", "confidence": "confirmed"},
        headers=headers,
    ).get_json()["case"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        state_now = client.get(f"/v1/cases/{case['id']}", headers=headers).get_json()
        if state_now["state"] == "failed":
            break
        if not worker.run_once():
            time.sleep(0.1)
    assert state_now["state"] == "failed"
    assert "contain hook suspend" in state_now["last_error"]
    assert [e["event"] for e in state_now["timeline"]].count("hook.failed") == 2
    assert state.data["acct-1"] == 3  # never purged without containment
