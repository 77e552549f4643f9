"""POST /v1/age-checks, called by the signup flow."""

from __future__ import annotations

from typing import Any

from flask import current_app
from flask_smorest import Blueprint

from agegate.age_checks import service
from agegate.age_checks.lockouts import Lockouts
from agegate.age_checks.models import Outcome
from agegate.age_checks.schemas import AgeCheckArgs, AgeCheckSchema
from agegate.api_keys.auth import current_principal, requires
from agegate.api_keys.models import Scope
from agegate.db import call_after_commit, utcnow
from agegate.extensions import db
from agegate.jurisdictions.cache import current_table
from agegate.jurisdictions.service import resolve_place

blp = Blueprint(
    "age_checks",
    __name__,
    url_prefix="/v1/age-checks",
    description="Age checks for the signup flow",
)


@blp.post("")
@requires(Scope.AGE_CHECKS_WRITE)
@blp.arguments(AgeCheckArgs)
@blp.response(200, AgeCheckSchema)
def check(args: dict[str, Any]) -> dict[str, Any]:
    """Is a declared birth date (or age) old enough where the user is? Keeps no birth date."""
    now = utcnow()
    age = service.declared_age(args.get("date_of_birth"), args.get("age"), now)
    args.pop("date_of_birth", None)  # from here on, only the age in whole years exists
    country, subdivision = resolve_place(args.get("country"), args.get("subdivision"))
    lockouts: Lockouts = current_app.extensions["agegate.lockouts"]
    session_id, account_id = args.get("session_id"), args.get("account_id")
    session_hash = lockouts.session_hash(session_id) if session_id else None
    # Asked before the request's transaction begins: the lockout read never waits on it.
    locked = lockouts.is_locked(session_hash, account_id, now)

    declaration = service.Declaration(age, country, subdivision, session_hash, account_id)
    session = db.session
    decision = service.decide(
        session,
        current_table(),
        declaration,
        locked=locked,
        actor=current_principal().actor,
        now=now,
    )
    if decision.check.outcome is Outcome.DENIED:
        call_after_commit(session, lambda: lockouts.record_denial(session_hash, account_id))
    record = decision.check
    return {
        "id": record.id,
        "outcome": record.outcome,
        "reason": record.reason,
        "minimum_age": record.minimum_age,
        "jurisdiction": {
            "code": record.jurisdiction_code,
            "rule_version": record.rule_version,
            "citation": decision.citation,
            "matched": decision.matched,
        },
        "checked_at": record.checked_at,
    }
