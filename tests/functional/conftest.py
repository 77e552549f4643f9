"""The README's walk-through (test_walkthrough.py) runs `agegate serve` on the embedded default
whatever backend the suite was given, so only the embedded pass collects it: CI runs it once,
beside the PostgreSQL + Redis pass, rather than twice.
"""

from __future__ import annotations

import os

from tests.conftest import PG_ENV

collect_ignore = ["test_walkthrough.py"] if os.environ.get(PG_ENV) else []
