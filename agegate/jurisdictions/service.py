"""Use cases of the jurisdiction table: read it, add a version, retire a code, import a file."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from agegate.audit import service as audit
from agegate.errors import ConflictError, NotFoundError, ValidationError
from agegate.jurisdictions import codes
from agegate.jurisdictions.models import DEFAULT_CODE, JurisdictionRule, RuleStatus
from agegate.jurisdictions.rules import RuleTable, RuleVersion, rule_content
from agegate.jurisdictions.schemas import format_instant

__all__ = ["RuleInput", "RuleVersion"]

# Set on a session whose commit changes the table; the cache tells the other processes.
CHANGED = "jurisdictions_changed"


@dataclass(frozen=True)
class RuleInput:
    """A validated rule, as written by legal (no version, no author yet)."""

    code: str
    minimum_age: int
    effective_from: datetime
    status: RuleStatus
    citation: str
    notes: str = ""
    source_url: str = ""

    def content(self) -> tuple[Any, ...]:
        return rule_content(self)


@dataclass
class ImportPlan:
    added: list[tuple[RuleInput, RuleVersion | None]] = field(default_factory=list)
    unchanged: int = 0
    retired: list[str] = field(default_factory=list)

    @property
    def changes(self) -> int:
        return len(self.added) + len(self.retired)


def revision(session: Session) -> int:
    """Changes only append rows, so the highest id identifies the table's state."""
    return session.scalar(select(func.coalesce(func.max(JurisdictionRule.id), 0))) or 0


def load_table(session: Session) -> RuleTable:
    """Every version of every code, as one immutable table."""
    rows = session.scalars(select(JurisdictionRule).order_by(JurisdictionRule.id)).all()
    versions = [RuleVersion.of(row) for row in rows]
    return RuleTable.build(max((v.id for v in versions), default=0), versions)


def history(
    session: Session, code: str, *, after: int = 0, limit: int | None = None
) -> tuple[list[RuleVersion], bool]:
    """One code's versions after version `after`, oldest first, at most `limit` of them,
    and whether more follow."""
    query = select(JurisdictionRule).where(
        JurisdictionRule.code == code, JurisdictionRule.version > after
    )
    query = query.order_by(JurisdictionRule.version)
    rows = session.scalars(query if limit is None else query.limit(limit + 1)).all()
    if not rows and not session.scalar(
        select(JurisdictionRule.version).where(JurisdictionRule.code == code).limit(1)
    ):
        raise NotFoundError(
            f"no rule has ever been written for {code}", code="unknown_jurisdiction"
        )
    more = limit is not None and len(rows) > limit
    return [RuleVersion.of(row) for row in rows[:limit]], more


def add_version(
    session: Session, rule: RuleInput, *, actor: str, reason: str, now: datetime
) -> RuleVersion:
    """Add a version of rule.code (a change never overwrites: it appends)."""
    _check_default(rule)
    before = load_table(session).history(rule.code).decisive(now)
    return _insert(session, rule, actor=actor, reason=reason, now=now, before=before)


def retire(session: Session, code: str, *, actor: str, reason: str, now: datetime) -> RuleVersion:
    """End a code's rule now, scheduled versions included; `default` cannot be retired."""
    if code == DEFAULT_CODE:
        raise ValidationError(
            "the default rule cannot be retired",
            errors={"code": ["default always has a rule; change it with PUT instead"]},
            code="default_not_retirable",
        )
    history = load_table(session).history(code)
    live = history.live(now)
    if not live:
        raise NotFoundError(f"{code} has no rule to retire", code="unknown_jurisdiction")
    template = history.decisive(now) or live[0]
    retirement = RuleInput(
        code=code,
        minimum_age=template.minimum_age,
        effective_from=now,
        status=template.status,
        citation=template.citation,
        notes=template.notes,
        source_url=template.source_url,
    )
    return _insert(
        session, retirement, actor=actor, reason=reason, now=now, before=template, retired=True
    )


def plan_import(
    session: Session, rules: Sequence[RuleInput], *, replace: bool, now: datetime
) -> ImportPlan:
    """What an import would change: rows whose content is new, and (replace) codes to retire."""
    table = load_table(session)
    plan = ImportPlan()
    for rule in rules:
        _check_default(rule)
        history = table.history(rule.code)
        if any(v.content() == rule.content() for v in history.live(now)):
            plan.unchanged += 1
        else:
            plan.added.append((rule, history.decisive(now)))
    if replace:
        in_file = {rule.code for rule in rules}
        plan.retired = [
            code
            for code in table.codes()
            if code != DEFAULT_CODE and code not in in_file and table.history(code).live(now)
        ]
    return plan


def apply_import(
    session: Session, plan: ImportPlan, *, actor: str, reason: str, now: datetime
) -> list[RuleVersion]:
    """Carry out a plan in the caller's transaction: all of it or, on any error, none of it."""
    added = [
        _insert(session, rule, actor=actor, reason=reason, now=now, before=before)
        for rule, before in plan.added
    ]
    for code in plan.retired:
        retire(session, code, actor=actor, reason=reason, now=now)
    audit.record(
        session,
        actor=actor,
        event="jurisdiction.imported",
        subject_type="jurisdiction_table",
        subject_id="*",
        data={
            "added": len(plan.added),
            "unchanged": plan.unchanged,
            "retired": plan.retired,
            "reason": reason,
        },
    )
    return added


def seed_if_empty(
    session: Session, rules: Sequence[RuleInput], *, actor: str, reason: str, now: datetime
) -> bool:
    """Load the shipped table into an empty table; False when there was something already."""
    if revision(session):
        return False
    apply_import(
        session,
        plan_import(session, rules, replace=False, now=now),
        actor=actor,
        reason=reason,
        now=now,
    )
    return True


# Every age check names a place, and a few hundred places are all there are: normalised once,
# a pair costs a dictionary lookup instead of pycountry's lookups. Invalid pairs raise and so
# are never kept; the bound keeps junk from growing it.
@functools.lru_cache(maxsize=4096)
def resolve_place(country: str | None, subdivision: str | None) -> tuple[str | None, str | None]:
    """Normalise a (country, subdivision) pair; the subdivision must belong to the country."""
    country_code = None
    if country:
        try:
            country_code = codes.normalize_country(country)
        except codes.CodeError as exc:
            raise ValidationError(
                f"country: {exc}", errors={"country": [str(exc)]}, code="unknown_code"
            ) from None
    if not subdivision:
        return country_code, None
    try:
        subdivision_code = codes.normalize(subdivision)
    except codes.CodeError as exc:
        raise ValidationError(
            f"subdivision: {exc}", errors={"subdivision": [str(exc)]}, code="unknown_code"
        ) from None
    owner = codes.country_of(subdivision_code)
    if owner is None:
        message = "a country code, not a subdivision code (e.g. CA-QC)"
        raise ValidationError(
            f"subdivision: {message}", errors={"subdivision": [message]}, code="unknown_code"
        )
    if country_code is None:
        country_code = owner
    if owner != country_code:
        message = "a subdivision of another country than country"
        raise ValidationError(
            f"subdivision: {message}",
            errors={"subdivision": [message]},
            code="subdivision_country_mismatch",
        )
    return country_code, subdivision_code


def _check_default(rule: RuleInput) -> None:
    if rule.code == DEFAULT_CODE and rule.status is not RuleStatus.IN_FORCE:
        raise ValidationError(
            "the default rule must be in force",
            errors={"status": ["default applies wherever nothing else does: it must be in_force"]},
            code="default_must_be_in_force",
        )


def _insert(
    session: Session,
    rule: RuleInput,
    *,
    actor: str,
    reason: str,
    now: datetime,
    before: RuleVersion | None,
    retired: bool = False,
) -> RuleVersion:
    latest = session.scalar(
        select(func.max(JurisdictionRule.version)).where(JurisdictionRule.code == rule.code)
    )
    row = JurisdictionRule(
        code=rule.code,
        version=(latest or 0) + 1,
        minimum_age=rule.minimum_age,
        effective_from=rule.effective_from,
        status=rule.status,
        citation=rule.citation,
        notes=rule.notes,
        source_url=rule.source_url,
        retired=retired,
        changed_by=actor,
        changed_at=now,
        change_reason=reason,
    )
    session.add(row)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise ConflictError(
            f"{rule.code} was changed by someone else at the same moment; send it again",
            code="concurrent_change",
        ) from None
    version = RuleVersion.of(row)
    audit.record(
        session,
        actor=actor,
        event="jurisdiction.retired" if retired else "jurisdiction.version_added",
        subject_type="jurisdiction",
        subject_id=rule.code,
        data={
            "version": version.version,
            "reason": reason,
            "before": None if before is None else snapshot(before),
            "after": snapshot(version),
        },
    )
    session.info[CHANGED] = True
    return version


def snapshot(version: RuleVersion) -> dict[str, Any]:
    """A version as plain JSON data (audit events, dry-run diffs)."""
    return {
        "code": version.code,
        "version": version.version,
        "minimum_age": version.minimum_age,
        "effective_from": format_instant(version.effective_from),
        "status": version.status.value,
        "citation": version.citation,
        "notes": version.notes,
        "source_url": version.source_url,
        "retired": version.retired,
    }
