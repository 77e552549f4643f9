"""One writer per case: a lease kept alive while a step runs, and every write fenced on it.

A worker holds a case by its lease (`cases.lease_owner` until `lease_expires_at`). Renewing
only between batches let a slow batch (an HTTP timeout, a big SCAN) outlive the lease, so a
second worker took the case over while the first went on writing. Now:

- a heartbeat thread renews the lease every third of its length on a connection of its
  own, for as long as the step runs, so a slow batch keeps it;
- every commit of the step's session first renews the lease in the same transaction, on
  the condition that this worker still holds it. If it does not, the commit fails with
  LeaseLost and nothing of it is written: a worker whose lease was taken over (it was
  stopped, or cut off from the database, for longer than the lease) stops at its next
  write. The renewal locks the case's row until the commit, so a takeover waits for it.
"""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from types import TracebackType

from sqlalchemy import Engine, Update, event, update
from sqlalchemy.orm import Session

from agegate import logs
from agegate.db import utcnow
from agegate.remediation.models import Case

log = logs.get_logger(__name__)


class LeaseLost(Exception):
    """Another worker holds the case now: this one's writes are refused."""


def _renew(case_id: uuid.UUID, owner: str, lease: timedelta) -> Update:
    return (
        update(Case)
        .where(Case.id == case_id, Case.lease_owner == owner)
        .values(lease_expires_at=utcnow() + lease)
        .execution_options(synchronize_session=False)
    )


class Lease:
    """The lease of one step: `with Lease(...) as lease:` runs the heartbeat, and
    `lease.fence(session)` makes every commit of that session conditional on holding it."""

    def __init__(self, engine: Engine, case_id: uuid.UUID, owner: str, length: timedelta) -> None:
        self._engine = engine
        self.case_id, self.owner, self.length = case_id, owner, length
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._fenced: Session | None = None
        self._thread = threading.Thread(target=self._beat, name=f"lease-{case_id}", daemon=True)

    def __enter__(self) -> Lease:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        if self._fenced is not None:
            event.remove(self._fenced, "before_commit", self._check)
            self._fenced = None

    def fence(self, session: Session) -> None:
        event.listen(session, "before_commit", self._check)
        self._fenced = session

    def unfence(self, session: Session) -> None:
        """For the commit that gives the lease back (after one last check)."""
        self._check(session)
        event.remove(session, "before_commit", self._check)
        self._fenced = None

    def _check(self, session: Session) -> None:
        held = session.execute(_renew(self.case_id, self.owner, self.length)).rowcount  # type: ignore[attr-defined]
        if held != 1:
            self.lost.set()
            raise LeaseLost(f"case {self.case_id}: another worker holds the lease")

    def _beat(self) -> None:
        every = self.length.total_seconds() / 3
        while not self._stop.wait(every):
            try:
                with self._engine.begin() as conn:
                    held = conn.execute(_renew(self.case_id, self.owner, self.length)).rowcount
            except Exception as exc:  # the database is away: the fence guards the writes
                log.warning("engine.heartbeat_failed", error=type(exc).__name__)
                continue
            if held != 1:
                self.lost.set()
                return
