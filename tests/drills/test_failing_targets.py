"""Drill: a purge target that fails now and then, and one that always fails.

An `agegate worker` process purges two accounts through a healthy `sql` target and an
`http` target whose service (a scripted local server) answers one account 503, 503, then
200, and the other 500 every time. The first case backs off, succeeds and gets an exact
receipt. The second reaches `failed` after `AGEGATE_MAX_ATTEMPTS`, and both its
`last_error` and the worker's log say which target failed and why; once the service is
mended, `retry` completes it.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from tests.support.drills import report, wait_for
from tests.support.metrics import sample
from tests.support.workers import (
    make_platform,
    open_confirmed_cases,
    platform_targets,
    rows_of,
    start_worker,
    worker_env,
)

FLAKY, BROKEN, BYSTANDER = "acct-flaky", "acct-broken", "acct-bystander"
GENERATIONS = 40  # per account: 120 rows
DELETED = 7  # what the service reports it deleted
MAX_ATTEMPTS = 3


class Service:
    """A downstream deletion API that answers each account from a script (the last repeats)."""

    def __init__(self) -> None:
        self.scripts = {FLAKY: [503, 503, 200], BROKEN: [500]}
        self.calls: list[tuple[float, str, int, str]] = []  # when, account, status, key
        self.lock = threading.Lock()

    def answer(self, account: str, key: str) -> int:
        with self.lock:
            script = self.scripts[account]
            done = sum(1 for _, a, _, _ in self.calls if a == account)
            status = script[min(done, len(script) - 1)]
            self.calls.append((time.monotonic(), account, status, key))
            return status

    def calls_for(self, account: str) -> list[tuple[float, str, int, str]]:
        with self.lock:
            return [call for call in self.calls if call[1] == account]


@pytest.fixture
def service() -> Iterator[tuple[Service, str]]:
    state = Service()

    class Handler(BaseHTTPRequestHandler):
        def do_DELETE(self) -> None:
            account = self.path.rstrip("/").split("/")[-1]
            status = state.answer(account, self.headers.get("Idempotency-Key", ""))
            raw = json.dumps({"deleted": DELETED} if status == 200 else {}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield state, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_drill_failing_targets_back_off_fail_and_say_why(
    service: tuple[Service, str],
    app_factory: Callable[..., Flask],
    settings_overrides: dict[str, Any],
    make_key: Callable[..., dict[str, str]],
    tmp_path: Path,
) -> None:
    provider, base = service
    platform = tmp_path / "platform.db"
    make_platform(platform, dict.fromkeys([FLAKY, BROKEN, BYSTANDER], GENERATIONS))
    targets = platform_targets(tmp_path, platform)
    with targets.open("a") as fh:
        url = f"{base}/v1/users/{{account_id}}"
        fh.write(f'  - {{name: provider, kind: http, method: DELETE, url: "{url}"}}\n')
    settings = {
        "targets_file": str(targets),
        "max_attempts": MAX_ATTEMPTS,
        "retry_backoff_cap_seconds": 1,  # backoff 0.5 to 1.5 s: the jitter of a 1 s cap
        "lease_seconds": 2,
    }
    app = app_factory(**settings)
    client = app.test_client()
    headers = make_key("cases:read", "cases:write")
    bystander_before = rows_of(platform, BYSTANDER)
    log = tmp_path / "worker.log"
    metrics_dir = tmp_path / "metrics"  # the worker's counters, as gunicorn's /metrics reads them
    metrics_dir.mkdir()
    opened = time.monotonic()
    open_confirmed_cases(app, [FLAKY, BROKEN])
    env = worker_env(settings_overrides, settings)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    worker = start_worker(env, log=log)
    try:
        flaky = case_of(client, headers, FLAKY)
        broken = case_of(client, headers, BROKEN)
        reach(client, headers, flaky, "completed")
        flaky_done = time.monotonic() - opened
        reach(client, headers, broken, "failed")
        broken_failed = time.monotonic() - opened
        failed_case = client.get(f"/v1/cases/{broken}", headers=headers).get_json()
        calls_when_failed = len(provider.calls_for(BROKEN))
        counted = worker_metrics(metrics_dir)
        time.sleep(1.5)  # a failed case stays failed: nobody calls the service again
        assert len(provider.calls_for(BROKEN)) == calls_when_failed

        provider.scripts[BROKEN] = [200]  # the service is mended
        assert client.post(f"/v1/cases/{broken}/retry", headers=headers).status_code == 200
        retried = time.monotonic()
        reach(client, headers, broken, "completed")
        retry_done = time.monotonic() - retried
    finally:
        worker.terminate()
        worker.wait(timeout=30)

    # Intermittent: two 503s, each retry after a backoff, then success; the receipt is exact.
    calls = provider.calls_for(FLAKY)
    assert [status for _, _, status, _ in calls] == [503, 503, 200]
    assert {key for *_, key in calls} == {f"{flaky}:provider"}  # one idempotent request
    gaps = [later[0] - earlier[0] for earlier, later in itertools.pairwise(calls)]
    assert all(gap >= 0.5 for gap in gaps), gaps  # the backoff's floor: half the 1 s cap
    case = client.get(f"/v1/cases/{flaky}", headers=headers).get_json()
    retries = [e for e in case["timeline"] if e["event"] == "target.retry_scheduled"]
    assert len(retries) == 2
    assert exact_receipt(client, headers, flaky) == {
        "platform-db": (GENERATIONS * 3,) * 2 + (0,),
        "provider": (DELETED, DELETED, 0),
    }

    # Always failing: `failed` after MAX_ATTEMPTS calls, and the case says which target and why.
    assert failed_case["state"] == "failed"
    assert calls_when_failed == MAX_ATTEMPTS
    step = {t["name"]: t for t in failed_case["targets"]}["provider"]
    assert step["state"] == "failed" and step["attempts"] == MAX_ATTEMPTS
    assert "HTTP 500" in step["last_error"]
    assert failed_case["last_error"] == "target provider: TargetError: provider: HTTP 500"
    # ...and so does the worker's log: the failed attempts and the failure, by case and target.
    lines = [json.loads(line) for line in log.read_text().splitlines()]  # JSON, every one
    about = [
        line
        for line in lines
        if line.get("case_id") == broken
        and line.get("target") == "provider"
        and "HTTP 500" in line.get("error", "")
    ]
    retries = [line for line in about if line["event"] == "target.retry_scheduled"]
    assert [line["attempt"] for line in retries] == list(range(1, MAX_ATTEMPTS)), lines
    assert all(line["level"] == "warning" for line in retries)
    (failure,) = [line for line in about if line["event"] == "case.failed"]
    assert failure["level"] == "error"
    # ...and so do the metrics: which target failed the case, and each failure's kind.
    assert sample(counted, "agegate_cases_failed_total", target="provider") == 1
    failures = sample(counted, "agegate_purge_failures_total", target="provider")
    assert failures == MAX_ATTEMPTS + 2  # the broken account's attempts and the flaky one's
    assert sample(counted, "agegate_purge_failures_total", error="TargetError") == failures
    assert exact_receipt(client, headers, broken) == {
        "platform-db": (GENERATIONS * 3,) * 2 + (0,),
        "provider": (DELETED, DELETED, 0),
    }
    for account in (FLAKY, BROKEN):
        assert rows_of(platform, account) == []
    assert rows_of(platform, BYSTANDER) == bystander_before
    report(
        "failing-targets",
        flaky_failures=2,
        backoff_gaps_s=[round(gap, 2) for gap in gaps],
        flaky_completed_after_s=f"{flaky_done:.1f}",
        broken_attempts=calls_when_failed,
        broken_failed_after_s=f"{broken_failed:.1f}",
        retried_case_completed_after_s=f"{retry_done:.1f}",
        log_lines_naming_target_and_error=len(about),
    )


def worker_metrics(directory: Path) -> str:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))
    return generate_latest(registry).decode()


def case_of(client: FlaskClient, headers: dict[str, str], account: str) -> str:
    (case,) = client.get(f"/v1/cases?account_id={account}", headers=headers).get_json()["items"]
    return str(case["id"])


def reach(client: FlaskClient, headers: dict[str, str], case_id: str, state: str) -> None:
    def there() -> bool:
        return bool(
            client.get(f"/v1/cases/{case_id}", headers=headers).get_json()["state"] == state
        )

    wait_for(there, 60, f"case {case_id} becomes {state}")


def exact_receipt(
    client: FlaskClient, headers: dict[str, str], case_id: str
) -> dict[str, tuple[int, int, int]]:
    response = client.get(f"/v1/cases/{case_id}/receipt", headers=headers)
    assert response.status_code == 200
    return {
        t["name"]: (t["found"], t["purged"], t["remaining"])
        for t in response.get_json()["receipt"]["targets"]
    }
