"""Flags (trust and safety's intake) and cases (follow and steer them)."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response, current_app, request

from agegate.accounts import ACCOUNT_ID_RULE, is_valid_account_id
from agegate.api import json_response
from agegate.api_keys.auth import current_principal, public, requires
from agegate.api_keys.models import Scope
from agegate.blueprints import Blueprint
from agegate.db import call_after_commit, utcnow
from agegate.errors import ValidationError
from agegate.extensions import db, store
from agegate.remediation import holds, idempotency, service
from agegate.remediation.engine import wake_workers
from agegate.remediation.models import Case, LegalHold
from agegate.remediation.receipts import ReceiptSigner, jwks
from agegate.remediation.schemas import (
    CaseListArgs,
    CaseListSchema,
    CaseSchema,
    DismissArgs,
    ExpediteArgs,
    FlagArgs,
    FlagResultSchema,
    FlagSchema,
    HoldArgs,
    HoldSchema,
    JwksSchema,
    ReceiptDocumentSchema,
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
        "targets": [
            {
                "name": t.name,
                "kind": t.kind,
                "state": t.state.value,
                "found": t.found,
                "purged": t.purged,
                "remaining": t.remaining,
                "attempts": t.attempts,
                "last_error": t.last_error,
            }
            for t in service.targets_of(db.session, case)
        ],
        "last_error": case.last_error,
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
@blp.alt_response(409, response="CONFLICT")
def flag(args: dict[str, Any], account_id: str) -> Response:
    """Flag an account as a suspected or confirmed child's; at most one open case per account."""
    account_id = _account(account_id)
    principal, now, session = current_principal(), utcnow(), db.session

    def run() -> idempotency.Answer:
        intake = service.flag_account(
            session, account_id=account_id, flagged_by=principal.actor, now=now, **args
        )
        call_after_commit(session, lambda: wake_workers(store.current))
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
@blp.alt_response(409, response="CONFLICT")
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
@blp.alt_response(409, response="CONFLICT")
def expedite(args: dict[str, Any], case_id: uuid.UUID) -> dict[str, Any]:
    """End the appeal window now."""
    case = service.get_case(db.session, case_id)
    service.expedite(
        db.session, case, reason=args["reason"], actor=current_principal().actor, now=utcnow()
    )
    call_after_commit(db.session, lambda: wake_workers(store.current))
    return describe(case)


@blp.post("/v1/cases/<uuid:case_id>/retry")
@requires(Scope.CASES_WRITE)
@blp.response(200, CaseSchema)
@blp.alt_response(409, response="CONFLICT")
def retry(case_id: uuid.UUID) -> dict[str, Any]:
    """Resume a failed case where it stopped."""
    session = db.session
    case = service.retry(
        session, service.get_case(session, case_id), actor=current_principal().actor, now=utcnow()
    )
    call_after_commit(session, lambda: wake_workers(store.current))
    return describe(case)


@blp.get("/v1/cases/<uuid:case_id>/receipt")
@requires(Scope.CASES_READ)
@blp.response(200, ReceiptDocumentSchema)
@blp.alt_response(409, response="CONFLICT")
def receipt(case_id: uuid.UUID) -> Response:
    """The signed deletion receipt of a completed case (409 before completion)."""
    document = service.receipt_of(db.session, service.get_case(db.session, case_id))
    return json_response(document)


@blp.get("/v1/receipts/public-key")
@public
@blp.response(200, JwksSchema)
def public_key() -> Response:
    """The JWKS that verifies receipts offline."""
    signer: ReceiptSigner = current_app.extensions["agegate.signer"]
    keys = service.receipt_keys(db.session)
    if signer.kid not in {kid for kid, _ in keys}:  # not registered yet (database was down)
        keys.append((signer.kid, signer.x))
    return json_response(jwks(keys))


@blp.post("/v1/accounts/<account_id>/legal-holds")
@requires(Scope.LEGAL_HOLDS_WRITE)
@blp.arguments(HoldArgs)
@blp.response(201, HoldSchema)
def place_hold(args: dict[str, Any], account_id: str) -> LegalHold:
    """Keep an account's data in some (or all) targets until released."""
    known = [t.name for t in current_app.extensions["agegate.targets"]]
    return holds.place(
        db.session,
        account_id=_account(account_id),
        targets=args["targets"],
        reason=args["reason"],
        known_targets=known,
        actor=current_principal().actor,
        now=utcnow(),
    )


@blp.delete("/v1/legal-holds/<uuid:hold_id>")
@requires(Scope.LEGAL_HOLDS_WRITE)
@blp.response(200, HoldSchema)
@blp.alt_response(409, response="CONFLICT")
def release_hold(hold_id: uuid.UUID) -> LegalHold:
    """Release a hold; the account's case resumes."""
    session = db.session
    hold = holds.release(session, hold_id, actor=current_principal().actor, now=utcnow())
    call_after_commit(session, lambda: wake_workers(store.current))
    return hold
