"""Figures of fault drills, written to the terminal: `./tests/run -q -s -k drill` shows them.

Drills report how long things took; they assert only generous upper bounds (to catch a
hang), never a timing, so a slow machine makes them slower, not red.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from flask import Flask

from agegate.db import utcnow
from agegate.extensions import db
from agegate.jurisdictions import service as jurisdictions
from agegate.jurisdictions.models import RuleStatus
from agegate.jurisdictions.schemas import parse_instant


def report(drill: str, **figures: object) -> None:
    """One line per drill: its name and its figures, in the order given."""
    shown = ", ".join(f"{name.replace('_', ' ')} {value}" for name, value in figures.items())
    print(f"\ndrill {drill}: {shown}", flush=True)


def wait_for(
    condition: Callable[[], bool], timeout: float, what: str, every: float = 0.05
) -> float:
    """Poll until condition() holds; the seconds it took. Fails after timeout (a hang)."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(every)
    return time.monotonic() - started


def seed_default_rule(app: Flask) -> None:
    """The jurisdiction table's floor, so age checks have a rule to apply."""
    rule = jurisdictions.RuleInput(
        "default", 13, parse_instant("2000-01-01"), RuleStatus.IN_FORCE, "Platform floor"
    )
    with app.app_context(), db.new_session() as s:
        jurisdictions.add_version(s, rule, actor="test", reason="drill", now=utcnow())
        s.commit()
