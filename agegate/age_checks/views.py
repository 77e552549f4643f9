"""POST /v1/age-checks, called by the signup flow."""

from __future__ import annotations

from flask import Response, current_app

from agegate import metrics
from agegate.age_checks import service
from agegate.age_checks.lockouts import Lockouts
from agegate.age_checks.recorder import CheckRecorder, RecordRefused
from agegate.age_checks.schemas import AgeCheckArgs, AgeCheckSchema
from agegate.api import json_response, load_json_body
from agegate.api_keys.auth import current_principal, requires
from agegate.api_keys.models import Scope
from agegate.apidoc import doc_only
from agegate.blueprints import Blueprint
from agegate.db import call_after_commit, utcnow
from agegate.errors import ValidationError
from agegate.extensions import db
from agegate.jurisdictions.cache import current_table
from agegate.jurisdictions.service import resolve_place

blp = Blueprint(
    "age_checks",
    __name__,
    url_prefix="/v1/age-checks",
    description="Age checks for the signup flow",
)


_ARGS = AgeCheckArgs()


@blp.post("")
@requires(Scope.AGE_CHECKS_WRITE)
@doc_only(
    blp.doc(
        requestBody={"required": True, "content": {"application/json": {"schema": AgeCheckArgs}}}
    ),
    blp.alt_response(400, response="BAD_REQUEST"),
    blp.alt_response(422, response="UNPROCESSABLE_ENTITY"),
    blp.response(200, AgeCheckSchema),
)
def check() -> Response:
    """Is a declared birth date (or age) old enough where the user is? Keeps no birth date."""
    args = load_json_body(_ARGS)
    now = utcnow()
    age = service.declared_age(args.get("date_of_birth"), args.get("age"), now)
    args.pop("date_of_birth", None)  # from here on, only the age in whole years exists
    country, subdivision = resolve_place(args.get("country"), args.get("subdivision"))
    extensions = current_app.extensions
    if country is None and extensions["agegate.settings"].require_country:
        message = "required: this service does not fall back to the default rule"
        raise ValidationError(f"country: {message}", errors={"country": [message]})
    lockouts: Lockouts = extensions["agegate.lockouts"]
    session_id, account_id = args.get("session_id"), args.get("account_id")
    session_hash = lockouts.session_hash(session_id) if session_id else None
    # Asked before the request's transaction begins: the lockout read never waits on it.
    locked = lockouts.is_locked(session_hash, account_id, now)

    declaration = service.Declaration(age, country, subdivision, session_hash, account_id)
    decision = service.decide(current_table(), declaration, locked=locked, now=now)
    recorder: CheckRecorder = extensions["agegate.check_recorder"]
    # A denial is answered only once it binds every process: its record is committed (the
    # truth a process starting later loads) and its message is out (what running processes
    # hear), both before the answer leaves.
    if decision.denied and account_id:
        session = db.session
        service.record_flagged_denial(session, decision, actor=current_principal().actor, now=now)
        call_after_commit(
            session, lambda: lockouts.record_denial(session_hash, account_id, now, written=True)
        )
    elif decision.denied:
        try:
            recorder.write_now(decision.values)
            written = True
        except RecordRefused:
            # The database refuses it: the record waits in the queue and the lockout in the
            # store (Redis); if the store refuses too, the answer is a 503.
            recorder.record(decision.values)
            written = False
        lockouts.record_denial(session_hash, account_id, now, written=written)
    else:
        recorder.record(decision.values)
    values = decision.values
    metrics.labelled(
        metrics.AGE_CHECKS,
        values["outcome"].value,
        values["reason"].value,
        values["jurisdiction_code"],
    ).inc()
    if locked:
        metrics.LOCKOUT_HITS.inc()
    return json_response(
        {
            "id": str(values["id"]),
            "outcome": values["outcome"].value,
            "reason": values["reason"].value,
            "minimum_age": values["minimum_age"],
            "jurisdiction": {
                "code": values["jurisdiction_code"],
                "rule_version": values["rule_version"],
                "citation": decision.citation,
                "matched": decision.matched,
            },
            "checked_at": values["checked_at"].isoformat(),
        }
    )
