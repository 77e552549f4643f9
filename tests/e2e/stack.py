"""What the end-to-end script runs against: fresh PostgreSQL databases (agegate's and the
platform's), a Redis database, gunicorn, `agegate worker` processes and the agegate CLI.

Every resource is registered on an ExitStack as soon as it exists, so that a failure, Ctrl-C
or SIGTERM at any point stops the processes and drops the databases.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.exc import SQLAlchemyError

ROOT = Path(__file__).resolve().parents[2]
AGEGATE = [sys.executable, "-c", "from agegate.cli import main; main()"]


class Mismatch(Exception):
    """What the script saw is not what a client was promised; the message says what."""


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise Mismatch(message)


def ok(message: str) -> None:
    print(f"  ok  {message}", flush=True)


def step(title: str) -> None:
    print(f"== {title}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, probe: Callable[[], Any], timeout: float, interval: float = 0.1) -> Any:
    """Call `probe` until it returns something truthy; Mismatch after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise Mismatch(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def scratch_database(stack: ExitStack, admin_url: str, name: str) -> str:
    """CREATE DATABASE now, DROP … WITH (FORCE) when the stack closes; returns its URL."""
    admin_sa = make_url(admin_url).set(drivername="postgresql+psycopg")
    admin = create_engine(
        admin_sa, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5}
    )
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except SQLAlchemyError as exc:
        admin.dispose()
        raise Mismatch(f"cannot reach PostgreSQL at {admin_url}: {exc.__cause__ or exc}") from None

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    stack.callback(drop)
    return admin_sa.set(database=name).render_as_string(hide_password=False)


def scratch_redis(stack: ExitStack, url: str) -> None:
    """The Redis database is the script's own: emptied before and after."""
    client = redis.Redis.from_url(url, socket_connect_timeout=5)
    try:
        client.flushdb()
    except redis.RedisError as exc:
        client.close()
        raise Mismatch(f"cannot reach Redis at {url}: {exc}") from None

    def flush() -> None:
        client.flushdb()
        client.close()

    stack.callback(flush)


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 15) -> str:
        text_ = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text_.splitlines()[-lines:])


@dataclass
class Services:
    """The processes of one deployment, and how to call its CLI and its HTTP API."""

    env: dict[str, str]
    logs: Path
    base_url: str = ""
    processes: list[Process] = field(default_factory=list)

    def start(self, stack: ExitStack, name: str, command: list[str]) -> Process:
        log = self.logs / f"{name}.log"
        handle = log.open("wb")
        popen = subprocess.Popen(
            command, cwd=ROOT, env=self.env, stdout=handle, stderr=subprocess.STDOUT
        )
        handle.close()
        process = Process(name, popen, log)
        self.processes.append(process)
        stack.callback(stop, process)
        return process

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run `agegate ARGS` with the deployment's settings, as an operator would."""
        done = subprocess.run(
            [*AGEGATE, *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=60
        )
        if check and done.returncode != 0:
            raise Mismatch(
                f"`agegate {' '.join(args)}` exited {done.returncode}:\n{done.stdout}{done.stderr}"
            )
        return done

    def http(
        self,
        method: str,
        path: str,
        key: str | None = None,
        body: Any = None,
        *,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """One request; returns the status and the JSON body (text when it is not JSON)."""
        data = None
        if body is not None:
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", content_type)
        if key is not None:
            request.add_header("Authorization", f"Bearer {key}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, _decode(response.read())
        except urllib.error.HTTPError as error:
            with error:
                return error.code, _decode(error.read())

    def check_alive(self) -> None:
        for process in self.processes:
            code = process.popen.poll()
            if code is not None:
                raise Mismatch(f"{process.name} exited with {code}:\n{process.tail()}")


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def stop(process: Process) -> None:
    """SIGTERM (gunicorn and workers stop gracefully), SIGKILL if that takes over 20 s."""
    if process.popen.poll() is None:
        process.popen.send_signal(signal.SIGTERM)
        try:
            process.popen.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.popen.kill()
            process.popen.wait()


def sigterm_interrupts() -> None:
    """SIGTERM (a CI timeout) unwinds like Ctrl-C, so that the cleanup still runs."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def engine(url: str) -> Engine:
    return create_engine(url, pool_size=1, connect_args={"connect_timeout": 5})


def environ(**settings: str) -> dict[str, str]:
    """The deployment's environment: the caller's own AGEGATE_* settings do not leak in."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("AGEGATE_")}
    return {**inherited, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **settings}
