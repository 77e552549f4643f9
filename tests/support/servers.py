"""Private Redis and PostgreSQL servers that fault drills may flush, stop and restart.

The shared servers of the machine are never touched: each drill starts its own on a free
port in a temp dir and removes it afterwards. A missing binary is an error (the drill
fails and says what to install), never a skip.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _binary(name: str, *fallbacks: str) -> str:
    found = shutil.which(name) or next(
        (path for pattern in fallbacks for path in sorted(glob.glob(pattern))[-1:]), None
    )
    if found is None:
        raise RuntimeError(f"this fault drill needs {name}, which is not installed")
    return found


class PrivateRedis:
    """A redis-server of the drill's own: FLUSHALL and restarts hurt nobody else."""

    def __init__(self, directory: Path) -> None:
        self.binary = _binary("redis-server")
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(
            [
                *(self.binary, "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(self.directory)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = self.client()
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the drill's redis-server did not start") from None
                time.sleep(0.05)
            finally:
                client.close()

    def stop(self) -> None:
        """Stop at once, keeping nothing (as a crash or a restart without persistence would)."""
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=10)
            self._process = None

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=2)

    def subscribers(self, channel: str) -> int:
        client = self.client()
        try:
            ((_, count),) = client.pubsub_numsub(channel)
            return int(count)
        finally:
            client.close()


class PrivatePostgres:
    """A PostgreSQL cluster of the drill's own in a temp dir (run as `postgres` when root)."""

    def __init__(self) -> None:
        pattern = "/usr/lib/postgresql/*/bin/"
        self.initdb = _binary("initdb", pattern + "initdb")
        self.pg_ctl = _binary("pg_ctl", pattern + "pg_ctl")
        self.directory = Path(tempfile.mkdtemp(prefix="agegate-drill-pg-"))
        self.port = free_port()
        self._as_postgres = os.geteuid() == 0  # PostgreSQL refuses to run as root
        if self._as_postgres:
            shutil.chown(self.directory, "postgres", "postgres")
        self.data = self.directory / "data"
        self._run(self.initdb, "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.directory}"
            " -c fsync=off -c max_connections=200"
        )
        log = str(self.directory / "log")
        self._run(self.pg_ctl, "-D", str(self.data), "-o", options, "-l", log, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server; `fast` ends every session as a restart does."""
        self._run(self.pg_ctl, "-D", str(self.data), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        subprocess.run(
            [*self._prefix(), self.pg_ctl, "-D", str(self.data), "-m", "immediate", "stop"],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(self.directory, ignore_errors=True)

    def _prefix(self) -> list[str]:
        return ["runuser", "-u", "postgres", "--"] if self._as_postgres else []

    def _run(self, *command: str) -> None:
        done = subprocess.run(
            [*self._prefix(), *command], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"{Path(command[0]).name} failed: {done.stdout}{done.stderr}")
