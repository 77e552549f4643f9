"""Flags (trust and safety's intake) and cases (follow and steer them)."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response, request
from flask_smorest import Blueprint

from agegate.accounts import ACCOUNT_ID_RULE, is_valid_account_id
from agegate.api import json_response
from agegate.api_keys.auth import current_principal, requires
from agegate.api_keys.models import Scope
from agegate.db import utcnow
from agegate.errors import ValidationError
from agegate.extensions import db
from agegate.remediation import idempotency, service
from agegate.remediation.models import Case
from agegate.remediation.schemas import (
    CaseListArgs,
    CaseListSchema,
    CaseSchema,
    DismissArgs,
    ExpediteArgs,
    FlagArgs,
    FlagResultSchema,
    FlagSchema,
)

blp = Blueprint(
    "remediation", __name__, description="Flags and remediation cases (trust and safety)"
)


def _account(account_id: str) -> str:
    if not is_valid_account_id(account_id):
        raise ValidationError(
            "invalid account id",
            errors={"account_id": [ACCOUNT_ID_RULE]},
            code="invalid_account_id",
        )
    return account_id


def describe(case: Case) -> dict[str, Any]:
    """A case as clients see it (CaseSchema's fields)."""
    events = service.timeline(db.session, case)
    return {
        "id": case.id,
        "account_id": case.account_id,
        "state": case.state,
        "confidence": case.confidence,
        "opened_at": case.opened_at,
        "purge_after": case.purge_after,
        "closed_at": case.closed_at,
        "targets": [],  # purge targets land with their own capability (issue 6)
        "timeline": [
            {"at": e.at, "event": e.event, "actor": e.actor, "data": e.data} for e in events
        ],
    }


@blp.post("/v1/accounts/<account_id>/flags")
@requires(Scope.FLAGS_WRITE)
@blp.arguments(FlagArgs)
@blp.doc(parameters=[{"in": "header", "name": "Idempotency-Key", "schema": {"type": "string"}}])
@blp.response(201, FlagResultSchema, description="A new case was opened")
@blp.alt_response(
    200, schema=FlagResultSchema, description="The flag joined the account's open case"
)
def flag(args: dict[str, Any], account_id: str) -> Response:
    """Flag an account as a suspected or confirmed child's; at most one open case per account."""
    account_id = _account(account_id)
    principal, now, session = current_principal(), utcnow(), db.session

    def run() -> idempotency.Answer:
        intake = service.flag_account(
            session, account_id=account_id, flagged_by=principal.actor, now=now, **args
        )
        body = {
            "flag": FlagSchema().dump(intake.flag),
            "case": CaseSchema().dump(describe(intake.case)),
        }
        return (201 if intake.opened else 200), body

    payload = {"account_id": account_id, **{k: getattr(v, "value", v) for k, v in args.items()}}
    status, body = idempotency.run_once(
        session,
        key_name=principal.key_name,
        idempotency_key=request.headers.get("Idempotency-Key"),
        request=payload,
        run=run,
        now=now,
    )
    # The body is already JSON (a replay is stored that way): no second dump.
    return json_response(body, status)


@blp.get("/v1/cases")
@requires(Scope.CASES_READ)
@blp.arguments(CaseListArgs, location="query")
@blp.response(200, CaseListSchema)
def list_cases(args: dict[str, Any]) -> dict[str, Any]:
    """Cases, newest first, filtered by state and account."""
    page, next_cursor = service.list_cases(db.session, **args)
    return {"items": [describe(c) for c in page], "next_cursor": next_cursor}


@blp.get("/v1/cases/<uuid:case_id>")
@requires(Scope.CASES_READ)
@blp.response(200, CaseSchema)
def get_case(case_id: uuid.UUID) -> dict[str, Any]:
    """A case: state, timeline and per-target progress."""
    return describe(service.get_case(db.session, case_id))


@blp.post("/v1/cases/<uuid:case_id>/dismiss")
@requires(Scope.CASES_WRITE)
@blp.arguments(DismissArgs)
@blp.response(200, CaseSchema)
def dismiss(args: dict[str, Any], case_id: uuid.UUID) -> dict[str, Any]:
    """Close a case without purging (e.g. an adult was verified); 409 once purging began."""
    case = service.get_case(db.session, case_id)
    service.dismiss(
        db.session, case, reason=args["reason"], actor=current_principal().actor, now=utcnow()
    )
    return describe(case)


@blp.post("/v1/cases/<uuid:case_id>/expedite")
@requires(Scope.CASES_WRITE)
@blp.arguments(ExpediteArgs)
@blp.response(200, CaseSchema)
def expedite(args: dict[str, Any], case_id: uuid.UUID) -> dict[str, Any]:
    """End the appeal window now."""
    case = service.get_case(db.session, case_id)
    service.expedite(
        db.session, case, reason=args["reason"], actor=current_principal().actor, now=utcnow()
    )
    return describe(case)
