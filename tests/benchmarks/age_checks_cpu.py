"""CPU per request of POST /v1/age-checks and of the bare Flask endpoint, measured in process.

    .venv/bin/python -m tests.benchmarks.age_checks_cpu [--requests 4000] [--profile allowed]
        [--instructions]

Wall-clock throughput on a shared machine is noisy; CPU time per request much less so. This
calls each WSGI app directly (no HTTP server, no sockets) with PostgreSQL and Redis as in
production and prints, per kind of request, the CPU time of the thread that serves it, of
this process's background threads (batched writes, subscriptions) and of the PostgreSQL backends
serving it. `--profile KIND` prints where one kind's time goes (cProfile). `--instructions`
runs the measurement under valgrind's callgrind and prints instructions per request, which
do not move with the machine's load (but leave out the kernel's work and cache misses).

Uses AGEGATE_BENCH_DATABASE_URL (it creates and drops a database) and AGEGATE_BENCH_REDIS_URL
(flushed), as tests/benchmarks/age_checks.py does.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import redis
from flask import Flask
from sqlalchemy import URL, create_engine, make_url, text

from agegate import create_app
from agegate.api_keys import service as api_keys
from agegate.extensions import db
from agegate.migrations import upgrade
from agegate.remediation.receipts import new_key_pem
from tests.benchmarks.age_checks import REDIS_URL, scratch_database
from tests.benchmarks.bare_app import app as bare_app

COUNTRIES = ("DE", "FR", "US", "GB", "CA", "BR", "JP", "IN")
KINDS = ("bare", "allowed", "denied", "mix")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SIGNING_KEY = new_key_pem().decode()
# How the parent tells its child under valgrind where things are.
CALLGRIND_ENV, DATABASE_ENV, KEY_ENV = (
    "AGEGATE_BENCH_CALLGRIND_DIR",
    "AGEGATE_BENCH_CHILD_DATABASE_URL",
    "AGEGATE_BENCH_CHILD_KEY",
)


def bodies(kind: str) -> Iterator[bytes]:
    """Request bodies like the wrk script's: adults, children (denied), or one child in ten."""
    n = 0
    while True:
        n += 1
        child = kind == "denied" or (kind == "mix" and n % 10 == 0)
        year = 2016 if child else 1950 + n % 55
        yield json.dumps(
            {
                "date_of_birth": f"{year}-{n % 12 + 1:02d}-{n % 28 + 1:02d}",
                "country": COUNTRIES[n % len(COUNTRIES)],
                "session_id": f"cpu-{kind}-{time.monotonic_ns()}-{n}",
            }
        ).encode()


def environ(path: str, body: bytes, key: str) -> dict[str, Any]:
    """What gunicorn hands the app for one request."""
    return {
        "REQUEST_METHOD": "POST",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_AUTHORIZATION": f"Bearer {key}",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": io.StringIO(),
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }


def call(app: Flask, path: str, body: bytes, key: str) -> None:
    status: list[str] = []
    chunks = app.wsgi_app(environ(path, body, key), lambda s, h, e=None: status.append(s))
    try:
        b"".join(chunks)
    finally:
        getattr(chunks, "close", lambda: None)()
    if not status[0].startswith("200"):
        raise RuntimeError(f"{path} answered {status[0]}")


class BackendCPU:
    """CPU seconds used by the PostgreSQL backends connected to one database (same machine)."""

    def __init__(self, admin_url: URL, database: str) -> None:
        self._engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        self._database = database

    def seconds(self) -> float:
        with self._engine.connect() as conn:
            pids = conn.execute(
                text("SELECT pid FROM pg_stat_activity WHERE datname = :d"), {"d": self._database}
            ).scalars()
            total = 0
            for pid in pids:
                try:
                    with open(f"/proc/{pid}/stat") as fh:
                        fields = fh.read().rsplit(")", 1)[1].split()
                except FileNotFoundError:  # a connection closed meanwhile
                    continue
                total += int(fields[11]) + int(fields[12])  # utime + stime
        return total / CLOCK_TICKS


class Instructions:
    """Instructions executed by this process (all threads), when it runs under callgrind."""

    def __init__(self, out_dir: str) -> None:
        self._out_dir = Path(out_dir)
        self._dumps = 0

    def zero(self) -> None:
        self._control("--zero")

    def count(self) -> int:
        """Instructions since the last zero()."""
        self._dumps += 1
        self._control(f"--dump=kind{self._dumps}")
        dump = self._out_dir / f"callgrind.{os.getpid()}.{self._dumps}"
        totals = re.search(r"^totals: (\d+)", dump.read_text(), re.MULTILINE)
        if totals is None:
            raise RuntimeError(f"no totals in {dump}")
        return int(totals.group(1))

    @staticmethod
    def _control(option: str) -> None:
        subprocess.run(
            ["callgrind_control", option, str(os.getpid())], check=True, capture_output=True
        )


def measure(
    run: Callable[[], None],
    count: int,
    finish: Callable[[], None],
    backends: BackendCPU,
    instructions: Instructions | None,
) -> dict[str, float]:
    if instructions is not None:
        instructions.zero()
    wall, thread, cpu = time.perf_counter(), time.thread_time(), time.process_time()
    pg = backends.seconds()
    for _ in range(count):
        run()
    thread = time.thread_time() - thread
    finish()  # e.g. write what the recorder still holds: its cost belongs to these requests
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    pg = backends.seconds() - pg
    result = {
        "wall": wall / count * 1e6,
        "thread": thread / count * 1e6,
        "others": (cpu - thread) / count * 1e6,
        "pg": pg / count * 1e6,
    }
    if instructions is not None:
        result["instructions"] = instructions.count() / count
    return result


def prepare(database_url: str) -> str:
    """Migrate the scratch database and make a key; returns the key."""
    engine = create_engine(database_url)
    upgrade(engine)
    engine.dispose()
    app = make_app(database_url)
    with app.app_context(), db.new_session() as session:
        _, key = api_keys.create_key(
            session, name="bench", scopes=["age-checks:write"], actor="bench"
        )
        session.commit()
    close(app)
    return key


def make_app(database_url: str) -> Flask:
    return create_app(
        {
            "database_url": database_url,
            "redis_url": REDIS_URL,
            "secret_key": "benchmark-secret-key-0123456789abcdef",
            "receipt_signing_key": SIGNING_KEY,
            "rate_limit_per_second": 1_000_000,
        }
    )


def close(app: Flask) -> None:
    app.extensions["agegate.check_recorder"].close()
    app.extensions["agegate.store"].close()
    app.extensions["agegate.engine"].dispose()


def run_all(args: argparse.Namespace, database_url: str, key: str) -> dict[str, dict[str, float]]:
    app = make_app(database_url)
    recorder = app.extensions["agegate.check_recorder"]
    url = make_url(database_url)
    backends = BackendCPU(url.set(database="postgres"), str(url.database))
    out_dir = os.environ.get(CALLGRIND_ENV)
    instructions = Instructions(out_dir) if out_dir else None

    def runner(kind: str) -> Callable[[], None]:
        source = bodies(kind)
        if kind == "bare":
            return lambda: call(bare_app, "/bare", next(source), key)
        return lambda: call(app, "/v1/age-checks", next(source), key)

    results = {}
    for kind in KINDS:
        run = runner(kind)
        for _ in range(max(100, args.requests // 10)):  # warm caches, pools, threads
            run()
        recorder.flush()
        profiler = cProfile.Profile() if kind == args.profile else None
        if profiler is not None:
            profiler.enable()
        results[kind] = measure(run, args.requests, recorder.flush, backends, instructions)
        if profiler is not None:
            profiler.disable()
            pstats.Stats(profiler).strip_dirs().sort_stats(args.sort).print_stats(40)
    close(app)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000, help="per kind of request")
    parser.add_argument("--profile", choices=KINDS, help="print where this kind's time goes")
    parser.add_argument("--sort", default="tottime", help="cProfile sort key (tottime, cumulative)")
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="count instructions under valgrind's callgrind (slow; stable on a busy machine)",
    )
    args = parser.parse_args()

    if os.environ.get(CALLGRIND_ENV):  # the child started below, under valgrind
        results = run_all(args, os.environ[DATABASE_ENV], os.environ[KEY_ENV])
        print(json.dumps(results))
        return

    with scratch_database() as database_url, tempfile.TemporaryDirectory() as tmp:
        redis.Redis.from_url(REDIS_URL).flushdb()
        key = prepare(database_url)
        if not args.instructions:
            results = run_all(args, database_url, key)
        else:
            if shutil.which("valgrind") is None:
                sys.exit("valgrind is missing: apt-get install valgrind")
            child = subprocess.run(
                [
                    "valgrind",
                    "--tool=callgrind",
                    f"--callgrind-out-file={tmp}/callgrind.%p",
                    sys.executable,
                    "-m",
                    "tests.benchmarks.age_checks_cpu",
                    *sys.argv[1:],
                ],
                env={**os.environ, CALLGRIND_ENV: tmp, DATABASE_ENV: database_url, KEY_ENV: key},
                check=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            results = json.loads(child.stdout.strip().splitlines()[-1])

    labels = {
        "bare": "bare Flask endpoint",
        "allowed": "age check, allowed",
        "denied": "age check, denied (a child)",
        "mix": "age check, 1 child in 10",
    }
    if args.instructions:
        print(f"instructions per request under callgrind, {args.requests} requests per kind")
        print(f"{'request':<36} {'instructions':>13} {'vs bare':>8}")
        bare = results["bare"]["instructions"]
        for kind, r in results.items():
            count = r["instructions"]
            print(f"{labels[kind]:<36} {count:>13,.0f} {count / bare:>8.2f}")
        return
    print(f"in-process CPU per request, {args.requests} requests per kind (µs)")
    print(
        f"{'request':<30} {'request thread':>15} {'other threads':>14} {'PostgreSQL':>11} {'wall':>7}"
    )
    for kind, r in results.items():
        print(
            f"{labels[kind]:<30} {r['thread']:>15.0f} {r['others']:>14.0f} {r['pg']:>11.0f} "
            f"{r['wall']:>7.0f}"
        )


if __name__ == "__main__":
    main()
