"""Re-apply completed purges after a restore: a backup of the platform brings back the data
that cases purged after the backup was taken.

Each completed case is re-verified against every configured target: whatever the account has
again is purged again, in bounded batches, and the case's timeline and the audit log record
`case.replayed` with the counts. Legal holds are honoured, and an account whose data another
case is responsible for now (an open case) is left to that case. Replaying is idempotent: a
second run counts zero everywhere, and an interrupted run is finished by running it again.
The receipt stays as it was signed; the replay is recorded next to it.
"""

from __future__ import annotations

import enum
import os
import socket
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, or_, select, update
from sqlalchemy.orm import Session

from agegate.db import utcnow
from agegate.remediation import holds, service
from agegate.remediation.models import Case, CaseState
from agegate.remediation.targets.base import PurgeContext, PurgeTarget


class TargetOutcome(enum.StrEnum):
    CLEAN = "clean"  # nothing of the account's was there
    PURGED = "purged"  # the account had data again, and it is gone
    HELD = "held"  # a legal hold keeps it: not counted, not touched
    NOT_CHECKED = "not_checked"  # the kind cannot be re-counted (its answer was the proof)
    FAILED = "failed"  # an error, or data left behind


@dataclass
class TargetReplay:
    name: str
    kind: str
    outcome: TargetOutcome
    found: int = 0
    purged: int = 0
    remaining: int = 0
    note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "outcome": self.outcome.value,
            "found": self.found,
            "purged": self.purged,
            "remaining": self.remaining,
            "note": self.note,
        }


@dataclass
class CaseReplay:
    case_id: uuid.UUID
    account_id: str
    completed_at: datetime | None
    targets: list[TargetReplay] = field(default_factory=list)
    skipped: str | None = None  # why the case was not replayed this time
    interrupted: bool = False

    @property
    def found(self) -> int:
        return sum(t.found for t in self.targets)

    @property
    def ok(self) -> bool:
        """Everything the account had again is gone (held and uncheckable targets aside)."""
        return (
            self.skipped is None
            and not self.interrupted
            and all(t.outcome is not TargetOutcome.FAILED for t in self.targets)
        )


class Replayer:
    """Replays one case at a time under a lease on the case row, so that two replays running
    at once never purge one account together (the engine never claims a completed case)."""

    def __init__(
        self,
        engine: Engine,
        targets: Sequence[PurgeTarget],
        *,
        batch_size: int,
        lease: timedelta,
        actor: str,
    ) -> None:
        self._engine = engine
        self._targets = targets
        self._batch_size = batch_size
        self._lease = lease
        self._actor = actor
        self._owner = f"replay:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"

    def completed_since(self, since: datetime) -> list[uuid.UUID]:
        """Ids of the cases completed at or after `since`, oldest completion first."""
        with Session(self._engine) as session:
            query = (
                select(Case.id)
                .where(Case.state == CaseState.COMPLETED, Case.closed_at >= since)
                .order_by(Case.closed_at, Case.id)
            )
            return list(session.scalars(query))

    def replay(self, case_id: uuid.UUID, since: datetime) -> CaseReplay:
        """Re-verify one completed case and purge what came back; the caller prints it."""
        with Session(self._engine, expire_on_commit=False) as session:
            case = service.get_case(session, case_id)
            result = CaseReplay(case.id, case.account_id, case.closed_at)
            if not self._claim(session, case):
                result.skipped = "another replay is working on this case; run again later"
                return result
            try:
                self._replay_claimed(session, case, result, since)
            finally:
                self._release(session, case)
        if result.interrupted:
            raise KeyboardInterrupt
        return result

    def _replay_claimed(
        self, session: Session, case: Case, result: CaseReplay, since: datetime
    ) -> None:
        other = service.open_case(session, case.account_id)
        if other is not None:
            result.skipped = (
                f"open case {other.id} ({other.state.value}) purges this account;"
                " run again once it has closed"
            )
            return
        held = holds.held_targets(session, case.account_id)
        session.commit()  # no transaction stays open while the targets work
        try:
            for target in self._targets:
                step = TargetReplay(target.name, target.kind, TargetOutcome.CLEAN)
                result.targets.append(step)
                if "*" in held or target.name in held:
                    step.outcome, step.note = TargetOutcome.HELD, "legal hold"
                elif getattr(target, "counts_when_purged", False):
                    step.outcome = TargetOutcome.NOT_CHECKED
                    step.note = "its deletion answer was the proof; it cannot be re-counted"
                else:
                    self._replay_target(
                        target,
                        case,
                        step,
                        lambda: service.renew_lease(session, case.id, self._owner, self._lease),
                    )
        except KeyboardInterrupt:  # record what was purged before the operator stopped it
            result.interrupted = True
        configured = {t.name for t in self._targets}
        for gone in service.targets_of(session, case):
            if gone.name not in configured:
                note = "no longer in the targets file"
                result.targets.append(
                    TargetReplay(gone.name, gone.kind, TargetOutcome.NOT_CHECKED, note=note)
                )
        self._record(session, case, result, since)

    def _replay_target(
        self, target: PurgeTarget, case: Case, step: TargetReplay, keep_lease: Callable[[], bool]
    ) -> None:
        lost_lease = False
        try:
            step.found = target.count(case.account_id)
            while step.found and not lost_lease:
                context = PurgeContext(str(case.id), purged=step.purged, started_at=utcnow())
                gone = target.purge_batch(case.account_id, self._batch_size, context)
                step.purged += gone
                if gone == 0:
                    break
                lost_lease = not keep_lease()
            step.remaining = target.count(case.account_id) if step.found else 0
        except Exception as exc:  # report every target, whatever went wrong, and go on
            step.outcome, step.note = TargetOutcome.FAILED, _reason(exc)
            return
        if step.remaining:
            step.outcome = TargetOutcome.FAILED
            step.note = "another replay took the case over" if lost_lease else "left after purging"
        elif step.found:
            step.outcome = TargetOutcome.PURGED

    def _record(self, session: Session, case: Case, result: CaseReplay, since: datetime) -> None:
        service.record_event(
            session,
            case,
            "case.replayed",
            self._actor,
            utcnow(),
            since=since.isoformat(),
            targets=[t.as_dict() for t in result.targets],
            interrupted=result.interrupted,
        )
        session.commit()

    def _claim(self, session: Session, case: Case) -> bool:
        now = utcnow()
        claimed = session.execute(
            update(Case)
            .where(
                Case.id == case.id,
                Case.state == CaseState.COMPLETED,
                or_(Case.lease_expires_at.is_(None), Case.lease_expires_at < now),
            )
            .values(lease_owner=self._owner, lease_expires_at=now + self._lease)
        )
        session.commit()
        count: int = claimed.rowcount  # type: ignore[attr-defined]
        return count == 1

    def _release(self, session: Session, case: Case) -> None:
        session.rollback()  # whatever failed mid-transaction must not block the release
        session.execute(
            update(Case)
            .where(Case.id == case.id, Case.lease_owner == self._owner)
            .values(lease_owner=None, lease_expires_at=None)
        )
        session.commit()


def _reason(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    return f"{type(exc).__name__}: {text.splitlines()[0]}"[:500]
