"""A change made through one process is seen by another process within seconds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

from flask import Flask

from agegate.db import utcnow
from agegate.extensions import db
from agegate.jurisdictions import service
from agegate.jurisdictions.cache import POLL_SECONDS
from agegate.jurisdictions.schemas import parse_instant

WATCHER = """
import json, sys, time
from agegate import create_app
from agegate.db import utcnow
from agegate.jurisdictions.cache import current_table

app = create_app(json.loads(sys.argv[1]))
last = None
deadline = time.monotonic() + 60
with app.app_context():
    while time.monotonic() < deadline:
        rule = current_table().resolve("DE", None, utcnow()).rule
        age = rule.minimum_age if rule else None
        if age != last:
            print(json.dumps({"age": age, "at": time.time()}), flush=True)
            last = age
        time.sleep(0.05)
"""


def _put(app: Flask, age: int) -> float:
    rule = service.RuleInput(
        code="DE",
        minimum_age=age,
        effective_from=parse_instant("2018-05-25"),
        status=service.RuleStatus.IN_FORCE,
        citation=f"Test Act ({age})",
    )
    with app.app_context(), db.new_session() as s:
        service.add_version(s, rule, actor="test", reason="cache test", now=utcnow())
        s.commit()
        return time.time()


def _next_age(watcher: subprocess.Popen[str]) -> dict[str, Any]:
    assert watcher.stdout is not None
    line = watcher.stdout.readline()
    assert line, "the watcher process stopped"
    return json.loads(line)  # type: ignore[no-any-return]


def test_a_change_reaches_another_process_within_seconds(
    app: Flask, settings_overrides: dict[str, Any], redis_url: str | None
) -> None:
    _put(app, 16)
    watcher = subprocess.Popen(
        [sys.executable, "-c", WATCHER, json.dumps(settings_overrides)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    try:
        assert _next_age(watcher)["age"] == 16
        changed_at = _put(app, 18)
        seen = _next_age(watcher)
        assert seen["age"] == 18
        # With Redis the change token is read within a second; without it the poll finds it.
        limit = 2.0 if redis_url else POLL_SECONDS + 1.5
        assert seen["at"] - changed_at < limit

        if redis_url:  # the token is lost: the database poll still carries the change
            import redis

            client = redis.Redis.from_url(redis_url)
            client.flushdb()
            client.close()
            changed_at = _put(app, 17)
            seen = _next_age(watcher)
            assert seen["age"] == 17
            assert seen["at"] - changed_at < POLL_SECONDS + 1.5
    finally:
        watcher.kill()
        watcher.wait()
        assert watcher.stdout is not None
        watcher.stdout.close()
