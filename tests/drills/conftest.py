"""Fault drills (see docs/operations/drills.md).

The drills that flush, stop and restart servers start private ones of their own
(tests/support/servers.py) and belong to the PostgreSQL + Redis pass, where CI has the
binaries: there, a missing redis-server or PostgreSQL fails them. On the embedded default
they are not collected (absent, never skipped), like the contract suite's server kinds.
"""

from __future__ import annotations

import os

from tests.conftest import PG_ENV

SERVER_DRILLS = [
    "test_lockout_fresh_processes.py",
    "test_lockout_late_and_redis_stopped.py",
    "test_postgres_restart.py",
    "test_redis_faults.py",
]

collect_ignore = [] if os.environ.get(PG_ENV) else SERVER_DRILLS
