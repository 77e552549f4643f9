"""HTTP edge of the jurisdiction table (docs/reference/contract.md)."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any, TypeVar

import marshmallow as ma
from flask import Response, request

from agegate.api_keys.auth import current_principal, requires
from agegate.api_keys.models import Scope
from agegate.blueprints import Blueprint
from agegate.db import utcnow
from agegate.errors import BadRequestError, ValidationError
from agegate.extensions import db
from agegate.jurisdictions import codes, files, service
from agegate.jurisdictions.cache import current_table
from agegate.jurisdictions.models import DEFAULT_CODE
from agegate.jurisdictions.rules import RuleVersion
from agegate.jurisdictions.schemas import (
    ChangeReasonArgs,
    CodeSchema,
    HistorySchema,
    ImportBodyArgs,
    ImportQueryArgs,
    ImportResultSchema,
    ImportRowArgs,
    ListArgs,
    PageArgs,
    ResolutionSchema,
    ResolveArgs,
    RuleArgs,
    RuleListSchema,
    RuleSchema,
    format_instant,
)

T = TypeVar("T")

blp = Blueprint(
    "jurisdictions",
    __name__,
    url_prefix="/v1/jurisdictions",
    description="The table of minimum ages, maintained by legal",
)


def _code(raw: str, field: str = "code") -> str:
    try:
        return codes.normalize(raw)
    except codes.CodeError as exc:
        raise ValidationError(
            f"{field}: {exc}", errors={field: [str(exc)]}, code="unknown_code"
        ) from None


@blp.get("")
@requires(Scope.JURISDICTIONS_READ)
@blp.arguments(ListArgs, location="query")
@blp.response(200, RuleListSchema)
def list_rules(args: dict[str, Any]) -> dict[str, Any]:
    """The rules in force now, or at `on`."""
    on = args["on"] or utcnow()
    rules = list(current_table().in_force_at(on))
    start = _cursor_position(args["cursor"], rules)
    page = rules[start : start + args["limit"]]
    more = start + args["limit"] < len(rules)
    next_cursor = _encode_cursor(page[-1].code) if more and page else None
    return {"items": page, "next_cursor": next_cursor, "on": on}


@blp.get("/resolve")
@requires(Scope.JURISDICTIONS_READ)
@blp.arguments(ResolveArgs, location="query")
@blp.response(200, ResolutionSchema)
def resolve(args: dict[str, Any]) -> dict[str, Any]:
    """Which rule applies to a country (and subdivision) at an instant, and why."""
    on = args["on"] or utcnow()
    country, subdivision = service.resolve_place(args["country"], args["subdivision"])
    resolution = current_table().resolve(country, subdivision, on)
    steps = [
        {
            "level": s.level,
            "code": s.code,
            "outcome": s.outcome,
            "version": s.version and s.version.version,
        }
        for s in resolution.steps
    ]
    return {"rule": resolution.rule, "matched": resolution.matched, "on": on, "steps": steps}


@blp.get("/export")
@requires(Scope.JURISDICTIONS_READ)
@blp.response(
    200,
    description="CSV: code,minimum_age,effective_from,status,citation,notes,source_url",
    content_type="text/csv",
)
def export() -> Response:
    """The current, scheduled and proposed rules, as CSV that imports back to the same table."""
    now = utcnow()
    table = current_table()
    rows = [v for code in table.codes() for v in table.history(code).live(now)]
    return Response(
        files.write_csv(rows),
        mimetype="text/csv",
        headers={"Content-Disposition": 'attachment; filename="jurisdictions.csv"'},
    )


@blp.post("/import")
@requires(Scope.JURISDICTIONS_WRITE, accepts=("text/csv", "application/json"))
# A misspelt `dry_run` must not turn a dry run into a real import: unknown parameters → 422.
@blp.arguments(ImportQueryArgs, location="query", unknown=ma.RAISE)
@blp.response(200, ImportResultSchema)
@blp.alt_response(409, response="CONFLICT")
@blp.doc(
    requestBody={
        "required": True,
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["rules"],
                    "properties": {"rules": {"type": "array", "items": ImportRowArgs}},
                }
            },
        },
    }
)
def import_rules(args: dict[str, Any]) -> dict[str, Any]:
    """Import a whole table atomically; `dry_run=true` shows the diff and changes nothing."""
    rules = files.parse_rules(_import_rows())
    now = utcnow()
    session = db.session
    plan = service.plan_import(session, rules, replace=args["replace"], now=now)
    if not args["dry_run"]:
        service.apply_import(
            session, plan, actor=current_principal().actor, reason=args["change_reason"], now=now
        )
    return import_report(plan, dry_run=args["dry_run"])


def import_report(plan: service.ImportPlan, *, dry_run: bool) -> dict[str, Any]:
    added = [
        {
            "code": rule.code,
            "minimum_age": rule.minimum_age,
            "effective_from": format_instant(rule.effective_from),
            "status": rule.status.value,
            "before": None if before is None else service.snapshot(before),
        }
        for rule, before in plan.added
    ]
    return {
        "dry_run": dry_run,
        "added": added,
        "unchanged": plan.unchanged,
        "retired": plan.retired,
    }


def _import_rows() -> list[Any]:
    if request.mimetype == "text/csv":
        return files.read_csv(request.get_data(as_text=True))
    try:
        body = json.loads(request.get_data())
    except (ValueError, RecursionError):  # RecursionError: nested too deeply to read
        raise BadRequestError(
            "The request body is not valid JSON.", code="malformed_json"
        ) from None
    if not isinstance(body, dict) or ImportBodyArgs().validate(body):
        raise ValidationError(
            'the body must be {"rules": [...]}', errors={"rules": ["a list of rules is required"]}
        )
    return list(body["rules"])


@blp.get("/<code>")
@requires(Scope.JURISDICTIONS_READ)
@blp.response(200, CodeSchema)
@blp.alt_response(422, response="UNPROCESSABLE_ENTITY")
def get_code(code: str) -> dict[str, Any]:
    """The current rule of one code, its scheduled versions and the proposals kept for it."""
    code = _code(code)
    return describe(code, utcnow())


def describe(code: str, now: datetime) -> dict[str, Any]:
    history = current_table().history(code)
    current = history.in_force(now)
    live = history.live(now)
    return {
        "code": code,
        "name": codes.name(code),
        "current": current,
        "scheduled": [v for v in live if v.effective_from > now],
        "tracked": [v for v in live if v.effective_from <= now and v is not current],
    }


@blp.put("/<code>")
@requires(Scope.JURISDICTIONS_WRITE)
@blp.arguments(RuleArgs)
@blp.response(200, RuleSchema)
@blp.alt_response(409, response="CONFLICT")
def put_code(args: dict[str, Any], code: str) -> RuleVersion:
    """Add a version of a code's rule (nothing is overwritten)."""
    reason = args.pop("change_reason")
    rule = service.RuleInput(code=_code(code), **args)
    return service.add_version(
        db.session, rule, actor=current_principal().actor, reason=reason, now=utcnow()
    )


@blp.delete("/<code>")
@requires(Scope.JURISDICTIONS_WRITE)
@blp.arguments(ChangeReasonArgs, location="query")
@blp.response(200, RuleSchema)
@blp.alt_response(409, response="CONFLICT")
def delete_code(args: dict[str, Any], code: str) -> RuleVersion:
    """Retire a code's rule from now on (never `default`); kept in history."""
    return service.retire(
        db.session,
        _code(code),
        actor=current_principal().actor,
        reason=args["change_reason"],
        now=utcnow(),
    )


@blp.get("/<code>/history")
@requires(Scope.JURISDICTIONS_READ)
@blp.arguments(PageArgs, location="query")
@blp.response(200, HistorySchema)
@blp.alt_response(422, response="UNPROCESSABLE_ENTITY")
def code_history(args: dict[str, Any], code: str) -> dict[str, Any]:
    """Every version of one code, oldest first, a page at a time."""
    code = _code(code)
    after = _decode_cursor(args["cursor"], "after_version", int) if args["cursor"] else 0
    items, more = service.history(db.session, code, after=after, limit=args["limit"])
    next_cursor = _encode(after_version=items[-1].version) if more else None
    return {"code": code, "items": items, "next_cursor": next_cursor}


def _cursor_position(cursor: str | None, rules: list[RuleVersion]) -> int:
    if cursor is None:
        return 0
    after = _decode_cursor(cursor, "after", str)
    return next(
        (i for i, r in enumerate(rules) if _sort_key(r.code) > _sort_key(after)), len(rules)
    )


def _sort_key(code: str) -> tuple[bool, str]:
    return (code != DEFAULT_CODE, code)


def _encode_cursor(code: str) -> str:
    return _encode(after=code)


def _encode(**position: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, key: str, kind: type[T]) -> T:
    """The position a cursor this API gave out holds; 422 for anything else."""
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))[key]
    except (binascii.Error, ValueError, KeyError, TypeError, RecursionError):
        value = None
    if type(value) is not kind:
        raise ValidationError(
            "the cursor is not one this API gave out", errors={"cursor": ["invalid cursor"]}
        )
    return value
