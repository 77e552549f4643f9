"""The age check use case: validate the declaration, apply the rule, keep only what
docs/age-checks.md lists."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from agegate.age_checks import ages
from agegate.age_checks.models import AgeCheck, Outcome, Reason
from agegate.errors import ValidationError
from agegate.flags.models import Confidence, FlagReason
from agegate.jurisdictions.models import DEFAULT_CODE, MIN_AGE_FLOOR
from agegate.jurisdictions.rules import RuleTable
from agegate.remediation import service as intake

# Used only if the table has no rule at all for the place (e.g. started empty on purpose).
FLOOR_CITATION = "Platform policy floor: no rule in the jurisdiction table applied"


@dataclass(frozen=True)
class Declaration:
    """A validated declaration. The birth date never leaves this object: only the age does."""

    age: int
    country: str | None
    subdivision: str | None
    session_hash: str | None
    account_id: str | None


@dataclass(frozen=True)
class Decision:
    values: dict[str, Any]  # the AgeCheck row: exactly what is kept
    citation: str
    matched: str

    @property
    def denied(self) -> bool:
        return self.values["outcome"] is Outcome.DENIED


def declared_age(date_of_birth: str | None, age: int | None, now: datetime) -> int:
    """Whole years from exactly one of a (partial) birth date or an age; errors never echo input."""
    if date_of_birth is not None and age is not None:
        raise _invalid("both_date_of_birth_and_age", "_body", "send date_of_birth or age, not both")
    if date_of_birth is None and age is None:
        raise _invalid("date_of_birth_or_age_required", "_body", "send date_of_birth or age")
    if age is not None:
        if not 0 <= age <= ages.MAX_AGE_YEARS:
            raise _invalid("age_out_of_range", "age", f"must be between 0 and {ages.MAX_AGE_YEARS}")
        return age
    assert date_of_birth is not None
    today = ages.today_everywhere(now)
    try:
        declared = ages.parse_birth_date(date_of_birth, today)
    except ages.BirthDateError as exc:
        raise _invalid(exc.code, "date_of_birth", str(exc)) from None
    return ages.age_on(declared.birth, today)


def decide(table: RuleTable, declaration: Declaration, *, locked: bool, now: datetime) -> Decision:
    """Apply the rule in force for the place (or the lockout) to a declaration."""
    resolution = table.resolve(declaration.country, declaration.subdivision, now)
    rule = resolution.rule
    minimum_age = rule.minimum_age if rule else MIN_AGE_FLOOR
    if locked:
        outcome, reason = Outcome.DENIED, Reason.PRIOR_UNDERAGE_DECLARATION
    elif declaration.age >= minimum_age:
        outcome, reason = Outcome.ALLOWED, Reason.MEETS_MINIMUM_AGE
    else:
        outcome, reason = Outcome.DENIED, Reason.BELOW_MINIMUM_AGE
    values = {
        "id": uuid.uuid4(),
        "outcome": outcome,
        "reason": reason,
        "jurisdiction_code": rule.code if rule else DEFAULT_CODE,
        "rule_id": rule.id if rule else None,
        "rule_version": rule.version if rule else None,
        "minimum_age": minimum_age,
        "age_capped": min(declaration.age, ages.RECORDED_AGE_CAP),
        "checked_at": now,
        "session_hash": declaration.session_hash,
        "account_id": declaration.account_id,
    }
    return Decision(
        values, rule.citation if rule else FLOOR_CITATION, resolution.matched or "floor"
    )


def record_flagged_denial(
    session: Session, decision: Decision, *, actor: str, now: datetime
) -> None:
    """Keep a denied account's check and flag the account, in the caller's transaction."""
    session.execute(insert(AgeCheck), [decision.values])
    # A self-declaration can be a typo: suspected, so the appeal window applies.
    intake.flag_account(
        session,
        account_id=decision.values["account_id"],
        reason=FlagReason.SELF_DECLARED_UNDERAGE,
        confidence=Confidence.SUSPECTED,
        evidence=f"age-check:{decision.values['id']}",
        flagged_by=actor,
        now=now,
        age_check_id=decision.values["id"],
    )


def _invalid(code: str, field: str, message: str) -> ValidationError:
    return ValidationError(message, errors={field: [message]}, code=code)
