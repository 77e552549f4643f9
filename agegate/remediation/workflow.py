"""One step of a case at a time: the state machine of docs/remediation.md, driven by the engine.

Every step re-reads the case and does only what its state asks, so running it twice (a
worker killed mid-step, a lease re-claimed) is harmless. Purging records its progress after
every batch; the counts in a receipt come from the targets' own counts, never from adding up
batches, so a batch done by a worker that died before recording it is not counted twice.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from agegate import logs, metrics
from agegate.age_checks.models import AgeCheck
from agegate.audit import service as audit
from agegate.flags.models import Confidence, Flag
from agegate.remediation import service
from agegate.remediation.models import Case, CaseState, CaseTarget, LegalHold, Receipt, StepState
from agegate.remediation.receipts import ReceiptSigner
from agegate.remediation.targets.base import PurgeContext, PurgeTarget, TargetError, refusal
from agegate.remediation.targets.http import HttpRequest, TargetPending, run_hook
from agegate.remediation.targets.ids import AccountIdRefused

ENGINE_ACTOR = "system:engine"
# Every timeline event the engine records is also a log line; failures are louder.
_LEVELS = {
    "case.failed": logging.ERROR,
    "target.retry_scheduled": logging.WARNING,
    "hook.failed": logging.WARNING,
}
log = logs.get_logger(__name__)


@dataclass(frozen=True)
class EngineConfig:
    grace: dict[Confidence, timedelta]
    batch_size: int
    max_attempts: int
    backoff_cap: timedelta
    version: str
    hooks: dict[str, tuple[HttpRequest, ...]] = field(default_factory=dict)


@dataclass
class StepContext:
    session: Session
    case: Case
    targets: Sequence[PurgeTarget]
    config: EngineConfig
    signer: ReceiptSigner | None
    now: Callable[[], datetime]
    keep_lease: Callable[[], bool]  # renews the lease; False when it was lost


def advance(ctx: StepContext) -> None:
    """Do the step the case's state asks for (the caller commits)."""
    handlers = {
        CaseState.OPEN: _contain,
        CaseState.DISMISSED: _release,
        CaseState.AWAITING_PURGE: _start_purging,
        CaseState.PURGING: _purge,
        CaseState.VERIFYING: _verify,
    }
    handler = handlers.get(ctx.case.state)
    if handler is None:  # nothing to do in this state (a person or a hold release acts)
        ctx.case.next_run_at = None
        return
    handler(ctx)


def _event(ctx: StepContext, event: str, **data: Any) -> None:
    service.record_event(ctx.session, ctx.case, event, ENGINE_ACTOR, ctx.now(), **data)
    log.log(_LEVELS.get(event, logging.INFO), event, **data)


def _contain(ctx: StepContext) -> None:
    case, now = ctx.case, ctx.now()
    hooks = ctx.config.hooks.get("contain", ())
    if not _run_hooks(ctx, "contain", hooks):
        return
    case.state = CaseState.CONTAINED
    _event(ctx, "case.contained", hooks=[h.name for h in hooks])
    if case.purge_after is None:
        case.purge_after = case.opened_at + ctx.config.grace[case.confidence]
    case.state = CaseState.AWAITING_PURGE
    _event(ctx, "case.awaiting_purge", purge_after=case.purge_after.isoformat())
    case.next_run_at = max(case.purge_after, now)


def _release(ctx: StepContext) -> None:
    """A dismissed case undoes its containment (e.g. unsuspends the account)."""
    hooks = ctx.config.hooks.get("release", ())
    if _run_hooks(ctx, "release", hooks):
        _event(ctx, "case.released", hooks=[h.name for h in hooks])
        ctx.case.next_run_at = None


def _run_hooks(ctx: StepContext, phase: str, hooks: Sequence[HttpRequest]) -> bool:
    """Run every hook; on a failure, try the whole phase again later (hooks are idempotent)."""
    for hook in hooks:
        try:
            run_hook(hook, ctx.case.account_id, str(ctx.case.id))
        except TargetError as exc:
            failures = sum(
                1 for e in service.timeline(ctx.session, ctx.case) if e.event == "hook.failed"
            )
            _event(ctx, "hook.failed", phase=phase, hook=hook.name, error=str(exc)[:500])
            if failures + 1 >= ctx.config.max_attempts:
                _fail(ctx, hook.name, f"{phase} hook {hook.name}: {exc}")
                return False
            delay = max(_backoff(ctx, failures + 1), _told_wait(ctx, exc.retry_after))
            ctx.case.next_run_at = ctx.now() + timedelta(seconds=delay)
            return False
    return True


def _backoff(ctx: StepContext, attempt: int) -> float:
    """Exponential backoff with jitter, capped: about 2, 4, 8 ... seconds."""
    jitter = random.uniform(0.5, 1.5)  # noqa: S311 (spreading retries, not cryptography)
    return min(2.0**attempt, ctx.config.backoff_cap.total_seconds()) * jitter


def _told_wait(ctx: StepContext, seconds: float) -> float:
    """A wait a target was told (HTTP Retry-After), honoured up to the backoff cap: a
    service cannot park a case for longer than the engine would."""
    return min(max(seconds, 0.0), ctx.config.backoff_cap.total_seconds())


def _held_targets(ctx: StepContext) -> set[str]:
    holds = ctx.session.scalars(
        select(LegalHold).where(
            LegalHold.account_id == ctx.case.account_id, LegalHold.released_at.is_(None)
        )
    ).all()
    names = {t.name for t in ctx.targets}
    held: set[str] = set()
    for hold in holds:
        held |= names if hold.targets is None else set(hold.targets) & names
    return held


def _start_purging(ctx: StepContext) -> None:
    case, now = ctx.case, ctx.now()
    if case.purge_after is not None and case.purge_after > now:
        case.next_run_at = case.purge_after
        return
    if not ctx.targets:
        _fail(ctx, None, "no purge targets are configured (AGEGATE_TARGETS_FILE)")
        return
    held = _held_targets(ctx)
    existing = {t.name for t in _steps(ctx)}
    for target in ctx.targets:
        if target.name in existing:  # a re-run of this step after a crash
            continue
        state = StepState.HELD if target.name in held else StepState.PURGING
        # A target that cannot tell this account's items apart purges nothing (it never
        # guesses); the others go on, and the case fails once they are done.
        refused = refusal(target, case.account_id)
        found = 0 if refused else target.count(case.account_id)
        step = CaseTarget(
            case_id=case.id,
            name=target.name,
            kind=target.kind,
            state=state,
            found=found,
            purged=0,
            remaining=None if refused else found,
            attempts=0,
            held_after=0 if state is StepState.HELD else None,
        )
        ctx.session.add(step)
        if refused and state is StepState.PURGING:  # a held one is refused once released
            _refuse(ctx, step, refused)
    case.state = CaseState.PURGING
    _event(ctx, "case.purging", held=sorted(held))
    case.next_run_at = now


def _steps(ctx: StepContext) -> list[CaseTarget]:
    query = select(CaseTarget).where(CaseTarget.case_id == ctx.case.id).order_by(CaseTarget.id)
    return list(ctx.session.scalars(query))


def _purge(ctx: StepContext) -> None:
    by_name = {t.name: t for t in ctx.targets}
    for step in _steps(ctx):
        if step.state is not StepState.PURGING:
            continue
        if step.next_attempt_at is not None and step.next_attempt_at > ctx.now():
            continue
        if not _purge_target(ctx, step, by_name[step.name]):
            return  # failed, backing off, or the lease was lost
    steps = _steps(ctx)
    pending = [s for s in steps if s.state is StepState.PURGING]
    if pending:
        waits = [s.next_attempt_at for s in pending if s.next_attempt_at is not None]
        ctx.case.next_run_at = min(waits) if waits else ctx.now()
        return
    refused = [s for s in steps if s.state is StepState.FAILED]
    if refused:  # the others are done; a target that refused the id leaves the case failed
        _fail(ctx, refused[0].name, f"target {refused[0].name}: {refused[0].last_error}")
        return
    ctx.case.state = CaseState.VERIFYING
    _event(ctx, "case.verifying")
    ctx.case.next_run_at = ctx.now()


def _purge_target(ctx: StepContext, step: CaseTarget, target: PurgeTarget) -> bool:
    metrics.PURGE_ATTEMPTS.labels(step.name).inc()
    if step.remaining is None:  # refused when the purge began, retried since: count it now
        if reason := refusal(target, ctx.case.account_id):
            _refuse(ctx, step, reason)
            _fail(ctx, step.name, f"target {step.name}: {step.last_error}")
            return False
        try:
            step.found = step.remaining = target.count(ctx.case.account_id)
        except Exception as exc:
            _attempt_failed(ctx, step, exc)
            return False
    while True:
        if _held_now(ctx, step):  # a hold binds from its commit: not one batch more
            return True
        context = PurgeContext(
            str(ctx.case.id), purged=step.purged, started_at=ctx.case.purge_after
        )
        try:
            gone = target.purge_batch(ctx.case.account_id, ctx.config.batch_size, context)
        except TargetPending as pending:  # accepted and in progress: no attempt is used up
            wait = pending.poll_seconds
            if pending.told is not None:  # at least a second: no polling in a loop
                wait = max(_told_wait(ctx, pending.told), 1.0)
            step.next_attempt_at = ctx.now() + timedelta(seconds=wait)
            return False
        except AccountIdRefused as exc:  # no attempt can change that: the case fails now
            _refuse(ctx, step, str(exc))
            _fail(ctx, step.name, f"target {step.name}: {step.last_error}")
            return False
        except Exception as exc:
            _attempt_failed(ctx, step, exc)
            return False
        step.purged += gone
        metrics.PURGED_ITEMS.labels(step.name).inc(gone)
        step.remaining = max((step.remaining or 0) - gone, 0)
        ctx.session.commit()  # progress per batch: a successor resumes from here
        if gone == 0:
            # Done, unless a hold came during the last batch: the hold wins.
            ctx.session.execute(
                update(CaseTarget)
                .where(CaseTarget.id == step.id, CaseTarget.state == StepState.PURGING)
                .values(state=StepState.DONE, remaining=0, next_attempt_at=None)
            )
            _held_now(ctx, step)
            return True
        if not ctx.keep_lease():
            return False


def _held_now(ctx: StepContext, step: CaseTarget) -> bool:
    """Re-read the step: whether a legal hold has taken it since. The worker's own counts are
    the truth of what was purged before it stopped (the batch in flight included)."""
    ctx.session.refresh(step, ["state"])
    if step.state is not StepState.HELD:
        ctx.session.commit()  # no transaction stays open while the target works
        return False
    step.held_after = step.purged  # the flush writes this column only, never the state
    _event(ctx, "target.held", target=step.name, purged_before_hold=step.purged)
    ctx.session.commit()
    return True


def _attempt_failed(ctx: StepContext, step: CaseTarget, exc: Exception) -> None:
    metrics.PURGE_FAILURES.labels(step.name, type(exc).__name__).inc()
    step.attempts += 1
    step.last_error = f"{type(exc).__name__}: {exc}"[:500]
    if step.attempts >= ctx.config.max_attempts:
        step.state = StepState.FAILED
        _fail(ctx, step.name, f"target {step.name}: {step.last_error}")
        return
    delay = max(_backoff(ctx, step.attempts), _told_wait(ctx, getattr(exc, "retry_after", 0.0)))
    step.next_attempt_at = ctx.now() + timedelta(seconds=delay)
    _event(
        ctx,
        "target.retry_scheduled",
        target=step.name,
        attempt=step.attempts,
        max_attempts=ctx.config.max_attempts,
        retry_in_seconds=round(delay, 1),
        error=step.last_error,
    )


def step_failed(ctx: StepContext, kind: str, error: str) -> None:
    """A step raised `error` (the engine rolled its work back): back off, or after the last
    attempt fail the case."""
    case = ctx.case
    state = case.state
    case.step_failures += 1
    metrics.STEP_FAILURES.labels(state.value, kind).inc()
    attempts = ctx.config.max_attempts
    _event(
        ctx,
        "case.step_failed",
        state=state.value,
        attempt=case.step_failures,
        max_attempts=attempts,
        error=error,
    )
    if case.step_failures >= attempts:
        _fail(ctx, None, f"the {state.value} step failed {case.step_failures} times: {error}")
        return
    case.next_run_at = ctx.now() + timedelta(seconds=_backoff(ctx, case.step_failures))


def _refuse(ctx: StepContext, step: CaseTarget, reason: str) -> None:
    """The target will not purge this account id: its step fails at once, saying why."""
    metrics.PURGE_FAILURES.labels(step.name, AccountIdRefused.__name__).inc()
    step.state, step.next_attempt_at = StepState.FAILED, None
    step.last_error = (
        f"{AccountIdRefused.__name__}: {reason}; this target purged nothing of the account. "
        "Purge its items there by hand or change the store's layout, then retry the case"
    )[:500]
    _event(ctx, "target.refused", target=step.name, error=step.last_error)


def _fail(ctx: StepContext, target: str | None, error: str) -> None:
    """The case stops as `failed` (retryable); `error` says what failed and why."""
    metrics.CASES_FAILED.labels(target or "").inc()
    ctx.case.failed_state = ctx.case.state  # where `retry` resumes
    ctx.case.state, ctx.case.last_error, ctx.case.next_run_at = CaseState.FAILED, error, None
    _event(ctx, "case.failed", target=target, error=error)


def _verify(ctx: StepContext) -> None:
    by_name = {t.name: t for t in ctx.targets}
    steps = _steps(ctx)
    leftovers = False
    for step in steps:
        if step.state is not StepState.DONE:
            continue
        target = by_name[step.name]
        if getattr(target, "counts_when_purged", False):
            # The service's own answer is the count and the verification (`http`).
            step.found, step.remaining = step.purged, 0
            continue
        left = target.count(ctx.case.account_id)
        if left:
            # Found again (written during the purge, or a batch lost with a worker): purge it.
            step.found += left
            step.remaining, step.state = left, StepState.PURGING
            _event(ctx, "target.leftovers_found", target=step.name, count=left)
            leftovers = True
        else:
            step.purged, step.remaining = step.found, 0  # exact, whatever batches were lost
    if leftovers:
        ctx.case.state, ctx.case.next_run_at = CaseState.PURGING, ctx.now()
        return
    if any(s.state is StepState.HELD for s in steps):
        ctx.case.state, ctx.case.next_run_at = CaseState.ON_HOLD, None
        _event(ctx, "case.on_hold", targets=[s.name for s in steps if s.state is StepState.HELD])
        return
    _complete(ctx, steps)


def _complete(ctx: StepContext, steps: list[CaseTarget]) -> None:
    case, now = ctx.case, ctx.now()
    case.state, case.closed_at, case.next_run_at = CaseState.COMPLETED, now, None
    _event(ctx, "case.completed")
    if ctx.signer is None:
        raise RuntimeError("no receipt signing key: set AGEGATE_RECEIPT_SIGNING_KEY")
    anchor = audit.head(ctx.session)  # case.completed, just appended: it commits with this
    document = ctx.signer.sign(_receipt_body(ctx, steps, anchor))
    ctx.session.add(
        Receipt(
            case_id=case.id,
            body=document["receipt"],
            signature=document["signature"],
            kid=document["kid"],
            issued_at=now,
            audit_seq=anchor.seq,
            audit_hash=anchor.hash,
        )
    )
    metrics.RECEIPTS_SIGNED.labels(document["kid"]).inc()
    _event(ctx, "receipt.issued", kid=document["kid"])


def _receipt_body(
    ctx: StepContext, steps: list[CaseTarget], anchor: audit.Anchor
) -> dict[str, Any]:
    case, session = ctx.case, ctx.session
    flags = session.scalars(select(Flag).where(Flag.case_id == case.id)).all()
    reasons = sorted({f.reason.value for f in flags})
    holds = session.scalars(select(LegalHold).where(LegalHold.account_id == case.account_id)).all()
    transitions = [
        {"event": e.event, "at": e.at.isoformat()}
        for e in service.timeline(session, case)
        if e.event.startswith("case.")
    ]
    return {
        "case_id": str(case.id),
        "account_id": case.account_id,
        "reasons": reasons,
        "opened_at": case.opened_at.isoformat(),
        "completed_at": (case.closed_at or ctx.now()).isoformat(),
        "transitions": transitions,
        "targets": [
            {
                "name": s.name,
                "kind": s.kind,
                "found": s.found,
                "purged": s.purged,
                "remaining": s.remaining or 0,
                # Held at some point: what was purged before the hold stopped it.
                "held": s.held_after is not None,
                "purged_before_hold": s.held_after,
            }
            for s in steps
        ],
        "holds": [
            {
                "id": str(h.id),
                "targets": h.targets,
                "created_at": h.created_at.isoformat(),
                "released_at": h.released_at.isoformat() if h.released_at else None,
            }
            for h in holds
            if h.created_at <= (case.closed_at or ctx.now())
        ],
        "rules": _rules_applied(session, flags),
        "issued_at": ctx.now().isoformat(),
        "agegate_version": ctx.config.version,
        # The audit head at issue: if the log is ever cut back past it, verify says so.
        "audit_anchor": {"seq": anchor.seq, "hash": anchor.hash},
    }


def _rules_applied(session: Session, flags: Sequence[Flag]) -> list[dict[str, Any]]:
    """For flags raised by age checks: the jurisdiction rule each check applied. The link is
    the flag's own column, set by the check; evidence is free text and never parsed."""
    ids = [flag.age_check_id for flag in flags if flag.age_check_id is not None]
    checks = session.scalars(
        select(AgeCheck).where(AgeCheck.id.in_(ids)).order_by(AgeCheck.checked_at)
    )
    return [
        {
            "jurisdiction": c.jurisdiction_code,
            "rule_version": c.rule_version,
            "minimum_age": c.minimum_age,
        }
        for c in checks
    ]
