"""Benchmark: POST /v1/age-checks against a bare Flask endpoint, both under gunicorn with
config/gunicorn.conf.py, on PostgreSQL and Redis. Prints throughput, p50/p99 and the ratio.

    .venv/bin/python -m tests.benchmarks.age_checks [--duration 15] [--connections 8]

Needs wrk (apt-get install wrk), a PostgreSQL server (AGEGATE_BENCH_DATABASE_URL, default the
local `postgres` user) and Redis (AGEGATE_BENCH_REDIS_URL, default db 14, which is flushed).
It creates and drops a database of its own.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis
from sqlalchemy import create_engine, make_url, text

ROOT = Path(__file__).resolve().parents[2]
ADMIN_URL = os.environ.get(
    "AGEGATE_BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("AGEGATE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")

LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(key)s"
local countries = {"DE", "FR", "US", "GB", "CA", "BR", "JP", "IN"}
local n = 0
request = function()
  n = n + 1
  -- Mostly adults; one in `child_every` is a child, whose denial is committed at once.
  local year = (n %% %(child_every)d == 0) and 2016 or (1950 + n %% 55)
  local body = string.format(
    '{"date_of_birth":"%%d-%%02d-%%02d","country":"%%s","session_id":"bench-%%d-%%d"}',
    year, n %% 12 + 1, n %% 28 + 1, countries[n %% #countries + 1], math.random(1, 1e9), n)
  return wrk.format(nil, "%(path)s", nil, body)
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def scratch_database() -> Iterator[str]:
    admin = create_engine(
        make_url(ADMIN_URL).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT"
    )
    name = f"agegate_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield (
            make_url(ADMIN_URL)
            .set(drivername="postgresql+psycopg", database=name)
            .render_as_string(hide_password=False)
        )
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def gunicorn(app_spec: str, env: dict[str, str], port: int) -> Iterator[None]:
    cmd = [
        sys.executable,
        "-m",
        "gunicorn",
        "--config",
        str(ROOT / "config/gunicorn.conf.py"),
        "--access-logfile",
        "/dev/null",
        app_spec,
    ]
    process = subprocess.Popen(
        cmd, cwd=ROOT, env={**env, "AGEGATE_BIND": f"127.0.0.1:{port}"}, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"gunicorn for {app_spec} did not start") from None
                time.sleep(0.2)
        yield
    finally:
        process.terminate()
        process.wait(timeout=30)


def run_wrk(url: str, script: Path, duration: int, connections: int) -> dict[str, float]:
    subprocess.run(
        ["wrk", "-t2", f"-c{connections}", "-d3s", "-s", str(script), url],
        check=True,
        capture_output=True,
    )
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script), url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"non-2xx answers during the run:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    latency = {p: _ms(re.search(rf"\s{p}%\s+([\d.]+\w+)", out).group(1)) for p in ("50", "99")}  # type: ignore[union-attr]
    return {"rps": rps, "p50": latency["50"], "p99": latency["99"]}


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--child-every", type=int, default=10, help="one request in N is a child")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: apt-get install wrk")

    with scratch_database() as database_url, tempfile.TemporaryDirectory() as tmp:
        redis.Redis.from_url(REDIS_URL).flushdb()
        env = {
            **os.environ,
            "AGEGATE_DATABASE_URL": database_url,
            "AGEGATE_REDIS_URL": REDIS_URL,
            "AGEGATE_SECRET_KEY": "benchmark-secret-key-0123456789abcdef",
            "AGEGATE_RATE_LIMIT_PER_SECOND": "1000000",
        }
        agegate = [sys.executable, "-c", "from agegate.cli import main; main()"]
        subprocess.run([*agegate, "db", "upgrade"], env=env, check=True, capture_output=True)
        subprocess.run(
            [*agegate, "jurisdictions", "show", "DE"], env=env, check=True, capture_output=True
        )  # seeds
        key = (
            subprocess.run(
                [*agegate, "keys", "create", "--name", "bench", "--scope", "age-checks:write"],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )

        results = {}
        for name, spec, path in (
            ("bare Flask endpoint", "tests.benchmarks.bare_app:app", "/bare"),
            ("POST /v1/age-checks", "wsgi:app", "/v1/age-checks"),
        ):
            script = Path(tmp) / f"{name.split()[0]}.lua"
            script.write_text(LUA % {"key": key, "path": path, "child_every": args.child_every})
            port = free_port()
            with gunicorn(spec, env, port):
                results[name] = run_wrk(
                    f"http://127.0.0.1:{port}", script, args.duration, args.connections
                )

    workers = os.environ.get("AGEGATE_WEB_WORKERS", f"{os.cpu_count() or 1} cores x 2 + 1")
    print(
        f"gunicorn config/gunicorn.conf.py (sync, workers: {workers}); wrk -t2 -c{args.connections} -d{args.duration}s"
    )
    print(f"{'endpoint':<22} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for name, r in results.items():
        print(f"{name:<22} {r['rps']:>9.0f} {r['p50']:>8.2f} {r['p99']:>8.2f}")
    bare, check = results["bare Flask endpoint"], results["POST /v1/age-checks"]
    ratio = check["rps"] / bare["rps"]
    print(f"throughput ratio (age check / bare): {ratio:.2f}  (goal >= 0.60)")
    print(f"age check p99: {check['p99']:.2f} ms  (goal < 15 ms)")


if __name__ == "__main__":
    main()
