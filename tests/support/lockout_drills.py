"""What the lockout drills share: a gunicorn with the production config, and a denied
session's retry on another process."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.servers import free_port
from tests.support.workers import ROOT, worker_env

# A birth date twelve years ago: a child in DE (16), whatever day the drill runs.
CHILD = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 12 * 366 * 86400))


def post(url: str, key: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def server_env(settings: dict[str, Any], redis_url: str, tmp_path: Path) -> dict[str, str]:
    """The environment of a drill's gunicorn: the test's settings with this Redis (or none),
    and a metrics directory of the server's own under the test's temp dir."""
    env = worker_env(settings, {"redis_url": redis_url})
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env["TMPDIR"] = str(tmp_path)
    return env


class Server:
    """A gunicorn with the production config, its output (JSON lines) in a file."""

    def __init__(self, env: dict[str, str], log: Path, workers: int, *options: str) -> None:
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        self.log = log
        env = {**env, "AGEGATE_BIND": f"127.0.0.1:{port}", "AGEGATE_WEB_WORKERS": str(workers)}
        gunicorn = Path(sys.executable).parent / "gunicorn"
        command = [str(gunicorn), "--config", "config/gunicorn.conf.py", *options, "wsgi:app"]
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 60
        while not self._ready():
            assert time.monotonic() < deadline and self.process.poll() is None, "no gunicorn"
            time.sleep(0.2)

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base}/readyz", timeout=5) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        self.process.wait(timeout=30)

    def check_pids(self) -> list[int]:
        """The process of every age check answered, from the access log (once stopped: a
        worker logs its request after the answer has gone)."""
        entries = [json.loads(line) for line in self.log.read_text().splitlines()]
        return [e["pid"] for e in entries if e.get("path") == "/v1/age-checks"]


def deny_then_retry(
    denier: Server, other: Server, key: str, session: str
) -> tuple[str, float, float]:
    """Deny a new session on one server, then at once send it an adult's date on the other:
    the retry's reason, how many milliseconds the denial took, and how many after its answer
    the retry's came."""
    body = {"date_of_birth": CHILD, "country": "DE", "session_id": session}
    sent = time.monotonic()
    status, first = post(f"{denier.base}/v1/age-checks", key, body)
    assert (status, first["outcome"]) == (200, "denied"), first
    answered = time.monotonic()
    body = {"date_of_birth": "1990-04-01", "country": "DE", "session_id": session}
    status, retry = post(f"{other.base}/v1/age-checks", key, body)
    assert status == 200, retry
    return retry["reason"], (answered - sent) * 1000, (time.monotonic() - answered) * 1000


def warm(key: str, *servers: Server) -> None:
    """Each worker answers a few checks first, so that it has loaded and subscribed."""
    for server in servers:
        for n in range(3):
            body = {"age": 30, "session_id": f"warm-{server.base}-{n}"}
            assert post(f"{server.base}/v1/age-checks", key, body)[0] == 200
