"""What an on-call engineer sees: /metrics, request ids, and JSON logs that keep secrets out,
in process and under gunicorn with several workers."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from flask import Flask

from agegate.jurisdictions.seed import seed_shipped_table
from tests.functional.test_age_checks import seed_table
from tests.support.metrics import grown, sample
from tests.support.workers import ROOT, open_confirmed_cases, worker_env


def test_metrics_are_public_prometheus_text_with_the_workflow_gauges(app: Flask) -> None:
    open_confirmed_cases(app, ["acct-due"])
    response = app.test_client().get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    text = response.text
    assert sample(text, "agegate_metrics_database_up") == 1
    assert sample(text, "agegate_cases", state="open") == 1
    assert sample(text, "agegate_cases", state="completed") == 0
    assert sample(text, "agegate_oldest_due_work_seconds") > 0  # no worker ran: it waits


def test_requests_are_counted_by_route_template_and_status(
    app: Flask, make_key: Callable[..., dict[str, str]]
) -> None:
    client, headers = app.test_client(), make_key("cases:read")
    before = client.get("/metrics").text
    for _ in range(3):
        client.get("/v1/cases/5b0c4f53-1d8e-4c4b-9a53-7d7a2b0c9e11", headers=headers)
    client.get("/no-such-page")
    after = client.get("/metrics").text

    def grew(**labels: str) -> float:
        name = "agegate_http_requests_total"
        return grown(before, after, name, **labels)

    assert grew(endpoint="/v1/cases/<uuid:case_id>", method="GET", status="404") == 3
    assert grew(endpoint="unmatched", status="404") == 1
    latency = "agegate_http_request_duration_seconds_count"
    assert grown(before, after, latency, endpoint="/v1/cases/<uuid:case_id>") == 3


def test_a_made_up_method_is_counted_as_other_not_as_a_new_series(app: Flask) -> None:
    client = app.test_client()
    before = client.get("/metrics").text
    for i in range(5):
        client.open("/healthz", method=f"BREW{i}")
    after = client.get("/metrics").text
    assert grown(before, after, "agegate_http_requests_total", method="other") == 5
    assert "BREW" not in after


def test_age_check_outcomes_by_jurisdiction_and_lockout_hits_are_counted(
    app: Flask, make_key: Callable[..., dict[str, str]]
) -> None:
    seed_table(app)
    client, headers = app.test_client(), make_key("age-checks:write")
    before = client.get("/metrics").text
    child = {"age": 12, "country": "DE", "session_id": "sess-metrics"}
    for body in (child, {**child, "age": 40}, {"age": 40, "country": "CA", "subdivision": "CA-QC"}):
        assert client.post("/v1/age-checks", json=body, headers=headers).status_code == 200
    after = client.get("/metrics").text

    def grew(name: str, **labels: str) -> float:
        return grown(before, after, name, **labels)

    checks = "agegate_age_checks_total"
    assert grew(checks, outcome="denied", reason="below_minimum_age", jurisdiction="DE") == 1
    assert grew(checks, reason="prior_underage_declaration", jurisdiction="DE") == 1
    assert grew(checks, outcome="allowed", jurisdiction="CA-QC") == 1
    assert grew("agegate_lockout_hits_total") == 1


def test_every_response_carries_a_request_id_the_caller_may_choose(app: Flask) -> None:
    client = app.test_client()
    chosen = client.get("/healthz", headers={"X-Request-Id": "signup-7f3a.1"})
    assert chosen.headers["X-Request-Id"] == "signup-7f3a.1"
    made = client.get("/healthz", headers={"X-Request-Id": "no spaces or\ttabs"})
    assert len(made.headers["X-Request-Id"]) == 32
    assert made.headers["X-Request-Id"] != client.get("/healthz").headers["X-Request-Id"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _call(url: str, body: dict[str, Any] | None = None, key: str | None = None) -> int:
    request = urllib.request.Request(url, data=json.dumps(body).encode() if body else None)
    request.add_header("Content-Type", "application/json")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_under_gunicorn_metrics_add_up_across_workers_and_logs_are_clean_json(
    app: Flask,
    settings_overrides: dict[str, Any],
    make_key: Callable[..., dict[str, str]],
    tmp_path: Path,
) -> None:
    with app.app_context():
        seed_shipped_table()
    key = make_key("age-checks:write", "flags:write")["Authorization"].removeprefix("Bearer ")
    port = _free_port()
    env = worker_env(settings_overrides)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(AGEGATE_BIND=f"127.0.0.1:{port}", AGEGATE_WEB_WORKERS="3", TMPDIR=str(tmp_path))
    gunicorn = Path(sys.executable).parent / "gunicorn"
    server = subprocess.Popen(
        [str(gunicorn), "--config", "config/gunicorn.conf.py", "wsgi:app"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert server.stdout is not None
    lines: list[dict[str, Any]] = []  # every line must be JSON, or the reader fails the test
    reader = threading.Thread(
        target=lambda: lines.extend(json.loads(line) for line in server.stdout or ()),
        daemon=True,
    )
    reader.start()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if _call(f"{base}/readyz") == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline and server.poll() is None, "gunicorn did not start"
            time.sleep(0.2)
        # Until the access log shows that more than one worker answered (the kernel hands
        # connections to whichever worker accepts first, unevenly).
        sent = 0
        while len({line["pid"] for line in list(lines) if line.get("path") == "/healthz"}) < 2:
            assert sent < 3000, "one worker answered everything"
            with ThreadPoolExecutor(8) as pool:
                statuses = list(pool.map(lambda _: _call(f"{base}/healthz"), range(40)))
            assert statuses == [200] * 40
            sent += 40
            time.sleep(0.2)  # the access lines of the batch reach the reader
        child = {"date_of_birth": "2012-09-14", "country": "DE", "session_id": "sess-gunicorn"}
        assert _call(f"{base}/v1/age-checks", child, key) == 200
        flag = {"reason": "other", "confidence": "suspected", "evidence": "marker-evidence-7731"}
        assert _call(f"{base}/v1/accounts/acct-gunicorn/flags", flag, key) == 201
        with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
            text = response.read().decode()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        reader.join(timeout=10)
        server.stdout.close()

    healthz = {"endpoint": "/healthz", "method": "GET", "status": "200"}
    assert sample(text, "agegate_http_requests_total", **healthz) == sent
    assert sample(text, "agegate_age_checks_total", outcome="denied", jurisdiction="DE") == 1
    assert sample(text, "agegate_cases", state="open") == 1

    assert not reader.is_alive()
    assert all(line.get("request_id") for line in lines if line.get("event") == "request")
    assert any(line.get("path") == "/v1/age-checks" for line in lines)
    text_out = json.dumps(lines)
    # The date in the spellings a careless line could use (the bare year also turns up in
    # timestamps and ids by chance, so it proves nothing).
    for secret in (
        "2012-09-14",
        "14/09/2012",
        "09/14/2012",
        "20120914",
        key,
        "marker-evidence-7731",
    ):
        assert secret not in text_out, secret
    assert not os.path.exists(tmp_path / f"agegate-metrics-{server.pid}"), "left its files"
