"""Benchmark: POST /v1/age-checks against a bare Flask endpoint, both under gunicorn with
config/gunicorn.conf.py, on PostgreSQL and Redis. Prints throughput, p50/p99 and the ratio.

    .venv/bin/python -m tests.benchmarks.age_checks [--rounds 6] [--duration 8]
        [--connections N] [--child-every 10 | --child-free] [--baseline-tree PATH]

Needs wrk (apt-get install wrk), a PostgreSQL server (AGEGATE_BENCH_DATABASE_URL, default the
local `postgres` user) and Redis (AGEGATE_BENCH_REDIS_URL, default db 14, which is flushed).
It creates and drops a database of its own. Both servers run side by side, each warmed up
once; each round then measures one and at once the other, in turn first (so that a drift of
the machine's speed favours neither), and gives one ratio. The figures are the rounds' median
and range: on a shared virtual machine the same server's throughput moves by a third from one
minute to the next, so only endpoints measured seconds apart compare well. Besides wall-clock
figures it prints the CPU time per request of the gunicorn processes (master and workers) and
of the PostgreSQL backends serving the benchmark's database.

With --baseline-tree (a git worktree of an earlier commit, say), the age check of that tree is
served too, on a database and a Redis database of its own, and measured in the same rounds,
each round taking the three servers in a rotating order: the figures then include the change's
own ratio, this tree's age check over the baseline's.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import redis
from sqlalchemy import create_engine, make_url, text

from agegate.remediation.receipts import new_key_pem

ROOT = Path(__file__).resolve().parents[2]
ADMIN_URL = os.environ.get(
    "AGEGATE_BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("AGEGATE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
BASELINE_REDIS_URL = os.environ.get("AGEGATE_BENCH_BASELINE_REDIS_URL", "redis://127.0.0.1:6379/13")
BARE, CHECK, BASELINE = "bare Flask endpoint", "POST /v1/age-checks", "the same, baseline tree"

LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(key)s"
local countries = {"DE", "FR", "US", "GB", "CA", "BR", "JP", "IN"}
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("thread_id", threads)
end
local n = 0
request = function()
  n = n + 1
  -- Mostly adults; one in `child_every` is a child, whose denial is committed at once.
  -- Every session is new: the thread and the start time keep wrk's threads and runs apart
  -- (otherwise a later run would replay sessions an earlier one got locked out).
  local year = (n %% %(child_every)d == 0) and 2016 or (1950 + n %% 55)
  local body = string.format(
    '{"date_of_birth":"%%d-%%02d-%%02d","country":"%%s","session_id":"bench-%%d-%%d-%%d"}',
    year, n %% 12 + 1, n %% 28 + 1, countries[n %% #countries + 1], thread_id, started, n)
  return wrk.format(nil, "%(path)s", nil, body)
end
function init(args)
  started = os.time()
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
def gunicorn(app_spec: str, env: dict[str, str], port: int, tree: Path = ROOT) -> Iterator[int]:
    """Serve app_spec of a source tree with its production config; yields the master's pid."""
    cmd = [
        sys.executable,
        "-m",
        "gunicorn",
        "--config",
        str(tree / "config/gunicorn.conf.py"),
        "--access-logfile",
        "/dev/null",
        app_spec,
    ]
    process = subprocess.Popen(
        cmd, cwd=tree, env={**env, "AGEGATE_BIND": f"127.0.0.1:{port}"}, stderr=subprocess.DEVNULL
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
        yield process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)


def _cpu_ticks(pid: int, *, reaped: bool = False) -> int:
    """utime + stime of a process (and of its reaped children), in clock ticks."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):  # it exited meanwhile
        return 0
    ticks = int(fields[11]) + int(fields[12])
    return ticks + (int(fields[13]) + int(fields[14]) if reaped else 0)


def server_cpu_seconds(master: int) -> float:
    """CPU used so far by a gunicorn master and its workers, recycled ones included."""
    ticks = _cpu_ticks(master, reaped=True)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
        if ppid == master:
            ticks += _cpu_ticks(int(stat.parent.name))
    return ticks / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds(database_url: str) -> float:
    """CPU used so far by the PostgreSQL backends connected to the benchmark's database."""
    url = make_url(database_url)
    engine = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            pids = conn.execute(
                text("SELECT pid FROM pg_stat_activity WHERE datname = :d"), {"d": url.database}
            ).scalars()
            ticks = sum(_cpu_ticks(pid) for pid in pids)
    finally:
        engine.dispose()
    return ticks / os.sysconf("SC_CLK_TCK")


def warm_up(url: str, script: Path, connections: int) -> None:
    """Start every worker and load what each loads on first use (rule table, lockout window)."""
    subprocess.run(
        ["wrk", "-t2", f"-c{connections}", "-d3s", "-s", str(script), url],
        check=True,
        capture_output=True,
    )


def run_wrk(
    url: str, script: Path, duration: int, connections: int, cpu: dict[str, Callable[[], float]]
) -> dict[str, float]:
    """One measured wrk run; throughput, latency and CPU per request."""
    before = {name: read() for name, read in cpu.items()}
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script), url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    used = {name: read() - before[name] for name, read in cpu.items()}
    if "Non-2xx" in out:
        raise RuntimeError(f"non-2xx answers during the run:\n{out}")
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    latency = {p: _ms(re.search(rf"\s{p}%\s+([\d.]+\w+)", out).group(1)) for p in ("50", "99")}  # type: ignore[union-attr]
    per_request = {name: seconds / requests * 1e6 for name, seconds in used.items()}
    return {"rps": rps, "p50": latency["50"], "p99": latency["99"], **per_request}


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def prepare(database_url: str, redis_url: str, tree: Path) -> tuple[dict[str, str], str]:
    """A tree's environment on its own database (migrated by that tree, table seeded), and a key."""
    redis.Redis.from_url(redis_url).flushdb()
    env = {
        **os.environ,
        "PYTHONPATH": str(tree),  # ahead of the editable install: the tree's own agegate
        "AGEGATE_DATABASE_URL": database_url,
        "AGEGATE_REDIS_URL": redis_url,
        "AGEGATE_SECRET_KEY": "benchmark-secret-key-0123456789abcdef",
        "AGEGATE_RECEIPT_SIGNING_KEY": new_key_pem().decode(),
        "AGEGATE_RATE_LIMIT_PER_SECOND": "1000000",
    }
    agegate = [sys.executable, "-c", "from agegate.cli import main; main()"]

    def run(*command: str) -> str:
        done = subprocess.run(
            [*agegate, *command], env=env, cwd=tree, check=True, capture_output=True, text=True
        )
        return done.stdout

    run("db", "upgrade")
    run("jurisdictions", "show", "DE")  # seeds the shipped table
    key = run("keys", "create", "--name", "bench", "--scope", "age-checks:write")
    return env, key.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=8, help="seconds per endpoint per round")
    parser.add_argument(
        "--connections",
        type=int,
        help="default: two per gunicorn worker, the fewest at which both endpoints run at full "
        "throughput (one request in hand and one waiting per worker); more only lengthen the queue",
    )
    parser.add_argument("--child-every", type=int, default=10, help="one request in N is a child")
    parser.add_argument(
        "--child-free", action="store_true", help="no children at all (overrides --child-every)"
    )
    parser.add_argument(
        "--rounds", type=int, default=6, help="measure both endpoints this many times, in turn"
    )
    parser.add_argument(
        "--baseline-tree",
        type=Path,
        help="also measure the age check of this source tree (e.g. a git worktree of main)",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: apt-get install wrk")
    if args.connections is None:
        args.connections = 2 * int(os.environ.get("AGEGATE_WEB_WORKERS", os.cpu_count() or 1))
    # A period longer than any run means that no request is a child's.
    child_every = 1_000_000_000 if args.child_free else args.child_every

    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        database_url = stack.enter_context(scratch_database())
        env, key = prepare(database_url, REDIS_URL, ROOT)
        servers = [(BARE, "tests.benchmarks.bare_app:app", "/bare", env, key, ROOT, database_url)]
        servers.append((CHECK, "wsgi:app", "/v1/age-checks", env, key, ROOT, database_url))
        if args.baseline_tree:
            tree = args.baseline_tree.resolve()
            baseline_url = stack.enter_context(scratch_database())
            baseline_env, baseline_key = prepare(baseline_url, BASELINE_REDIS_URL, tree)
            servers.append(
                (
                    BASELINE,
                    "wsgi:app",
                    "/v1/age-checks",
                    baseline_env,
                    baseline_key,
                    tree,
                    baseline_url,
                )
            )

        # The servers run side by side; the rounds rotate which goes first, so that a burst of
        # load from elsewhere on the machine hits them about alike.
        targets = []
        for number, (name, spec, path, server_env, server_key, tree, db_url) in enumerate(servers):
            script = Path(tmp) / f"target-{number}.lua"
            script.write_text(LUA % {"key": server_key, "path": path, "child_every": child_every})
            port = free_port()
            master = stack.enter_context(gunicorn(spec, server_env, port, tree))
            cpu = {
                "server_cpu": functools.partial(server_cpu_seconds, master),
                "pg_cpu": functools.partial(postgres_cpu_seconds, db_url),
            }
            targets.append((name, f"http://127.0.0.1:{port}", script, cpu))

        for _name, url, script, _cpu in targets:
            warm_up(url, script, args.connections)
        rounds = []
        for number in range(args.rounds):
            shift = number % len(targets)
            order = targets[shift:] + targets[:shift]
            rounds.append(
                {
                    name: run_wrk(url, script, args.duration, args.connections, cpu)
                    for name, url, script, cpu in order
                }
            )
    report(args, rounds)


def report(args: argparse.Namespace, rounds: list[dict[str, dict[str, float]]]) -> None:
    workers = os.environ.get("AGEGATE_WEB_WORKERS", f"one per core, {os.cpu_count() or 1}")
    mix = "no children" if args.child_free else f"1 request in {args.child_every} a child"
    print(
        f"gunicorn config/gunicorn.conf.py (sync, workers: {workers}); "
        f"wrk -t2 -c{args.connections} -d{args.duration}s; {mix}"
    )
    if args.baseline_tree:
        print(f"baseline tree: {args.baseline_tree}")
    print(
        f"{'round':<6} {'endpoint':<24} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'gunicorn µs/req':>16} {'PostgreSQL µs/req':>18}"
    )
    ratios, p99s, changes = [], [], []
    for number, results in enumerate(rounds, 1):
        for name, r in results.items():
            print(
                f"{number:<6} {name:<24} {r['rps']:>8.0f} {r['p50']:>7.2f} {r['p99']:>7.2f} "
                f"{r['server_cpu']:>16.0f} {r['pg_cpu']:>18.0f}"
            )
        bare, check = results[BARE], results[CHECK]
        ratios.append(check["rps"] / bare["rps"])
        p99s.append(check["p99"])
        line = (
            f"{number:<6} throughput ratio (age check / bare): {ratios[-1]:.2f}  (goal >= 0.70); "
            f"age check p99 {check['p99']:.2f} ms  (goal < 5 ms)"
        )
        if BASELINE in results:
            changes.append(check["rps"] / results[BASELINE]["rps"])
            line += f"; this tree / baseline: {changes[-1]:.2f}"
        print(line)
    if len(ratios) > 1:
        print(
            f"over {len(ratios)} rounds: ratio median {statistics.median(ratios):.2f} "
            f"(range {min(ratios):.2f}-{max(ratios):.2f}); age check p99 median "
            f"{statistics.median(p99s):.2f} ms (range {min(p99s):.2f}-{max(p99s):.2f})"
        )
        if changes:
            print(
                f"this tree's age check / the baseline's: median {statistics.median(changes):.2f} "
                f"(range {min(changes):.2f}-{max(changes):.2f})"
            )


if __name__ == "__main__":
    main()
