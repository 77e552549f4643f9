"""The workflow engine: the database is the queue (docs/remediation.md, "The engine").

A worker claims one due case at a time with a lease (`FOR UPDATE SKIP LOCKED` on
PostgreSQL; SQLite's single writer serialises claims), renews the lease after every batch,
and releases it when the step is done. A case whose worker died is claimable again as soon
as its lease expires: the claim query is also the sweep. A wake-up through the store
(Redis) after a commit makes an idle worker look at once; without it, it looks every
`POLL_SECONDS`.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

import structlog
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from agegate import logs, metrics
from agegate.db import utcnow
from agegate.remediation import service, workflow
from agegate.remediation.lease import Lease, LeaseLost
from agegate.remediation.models import Case
from agegate.remediation.receipts import ReceiptSigner
from agegate.remediation.targets.base import PurgeTarget
from agegate.store import Store

POLL_SECONDS = 1.0
WAKE_CHANNEL = "cases"
log = logs.get_logger(__name__)


class Worker:
    def __init__(
        self,
        engine: Engine,
        store: Store,
        targets: Sequence[PurgeTarget],
        signer: ReceiptSigner | None,
        config: workflow.EngineConfig,
        lease: timedelta,
    ) -> None:
        self._engine = engine
        self._store = store
        self._targets = targets
        self._signer = signer
        self._config = config
        self.lease = lease
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._wake = threading.Event()

    def run_forever(self, stop: threading.Event) -> None:
        """Work until `stop` is set; each step ends before the loop looks at `stop` again."""
        self._store.listen(WAKE_CHANNEL, lambda _message: self._wake.set(), self._wake.set)
        while not stop.is_set():
            try:
                busy = self.run_once()
            except Exception:  # one bad step must not stop the worker; the lease expires
                log.exception("engine.step_failed")
                busy = False
            if not busy:
                self._wake.wait(POLL_SECONDS)
                self._wake.clear()

    def run_once(self) -> bool:
        """Claim one due case and advance it by one step; False when nothing was due."""
        case_id = self._claim(utcnow())
        if case_id is None:
            return False
        with (
            structlog.contextvars.bound_contextvars(case_id=str(case_id)),
            Session(self._engine, expire_on_commit=False) as session,
        ):
            case = session.get(Case, case_id)
            if case is None or case.lease_owner != self.owner:
                return True
            with Lease(self._engine, case_id, self.owner, self.lease) as lease:
                lease.fence(session)  # every commit of the step: only while this worker holds it
                ctx = workflow.StepContext(
                    session=session,
                    case=case,
                    targets=self._targets,
                    config=self._config,
                    signer=self._signer,
                    now=utcnow,
                    keep_lease=lambda: not lease.lost.is_set(),
                )
                try:
                    workflow.advance(ctx)
                    case.step_failures = 0
                    lease.unfence(session)  # a last check, then the lease is given back
                    case.lease_owner, case.lease_expires_at = None, None
                    session.commit()
                except LeaseLost:
                    session.rollback()
                    metrics.LEASES_LOST.inc()
                    log.warning("engine.lease_lost")  # its new holder goes on from the database
                except Exception as exc:  # an attempt used up, never a loop (docs/remediation.md)
                    session.rollback()
                    self._step_failed(case_id, exc)
        return True

    def _step_failed(self, case_id: uuid.UUID, exc: Exception) -> None:
        """A step raised: it counts as an attempt and is tried again after a backoff; after
        the last attempt the case is `failed`, and `retry` resumes it. Without this, a step
        that always raises would be reclaimed every lease period forever."""
        error = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"[:300]
        log.error("engine.step_failed", error=error, exc_info=exc)
        with Session(self._engine, expire_on_commit=False) as session:
            case = session.get(Case, case_id)
            if case is None or case.lease_owner != self.owner:
                return  # another worker took it over meanwhile
            ctx = workflow.StepContext(
                session, case, self._targets, self._config, self._signer, utcnow, lambda: False
            )
            workflow.step_failed(ctx, type(exc).__name__, error)
            case.lease_owner, case.lease_expires_at = None, None
            session.commit()

    def _claim(self, now: datetime) -> uuid.UUID | None:
        with Session(self._engine) as session:
            query = select(Case).where(*Case.due(now)).order_by(Case.next_run_at).limit(1)
            if self._engine.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            case = session.scalar(query)
            if case is None:
                return None
            if case.lease_owner is not None:  # its worker stopped renewing: take over
                metrics.LEASE_RECLAIMS.inc()
                log.warning(
                    "case.lease_reclaimed", case_id=str(case.id), previous_owner=case.lease_owner
                )
                service.record_event(
                    session,
                    case,
                    "case.lease_reclaimed",
                    workflow.ENGINE_ACTOR,
                    now,
                    previous_owner=case.lease_owner,
                )
            case.lease_owner, case.lease_expires_at = self.owner, now + self.lease
            session.commit()
            return case.id


def wake_workers(store: Store) -> None:
    """After a commit that made a case due: tell idle workers (best effort)."""
    try:
        store.publish(WAKE_CHANNEL, "due")
    except Exception as exc:  # the poll finds the case anyway
        log.warning("engine.wake_up_not_sent", error=type(exc).__name__)
