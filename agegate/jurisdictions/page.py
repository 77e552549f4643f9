"""GET /minimum-ages: the public page a privacy policy links to (HTML, no JavaScript)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, time

from flask import Response, render_template

from agegate.api_keys.auth import public
from agegate.blueprints import Blueprint
from agegate.db import utcnow
from agegate.jurisdictions import codes
from agegate.jurisdictions.cache import current_table
from agegate.jurisdictions.models import DEFAULT_CODE, RuleStatus
from agegate.jurisdictions.rules import RuleVersion
from agegate.jurisdictions.schemas import EARLIEST_ZONE

blp = Blueprint("minimum_ages", __name__, description="The public page of minimum ages")


@dataclass(frozen=True)
class Row:
    name: str
    code: str
    rule: RuleVersion
    changes: list[str]


@blp.get("/minimum-ages")
@public
@blp.response(200, description="An HTML page", content_type="text/html")
def minimum_ages() -> Response:
    """The minimum age in force today per country and subdivision, with scheduled changes."""
    now = utcnow()
    table = current_table()
    rows = []
    for rule in table.in_force_at(now):
        changes = [_describe(v) for v in table.history(rule.code).scheduled(now) if not v.proposed]
        rows.append(Row(codes.name(rule.code), rule.code, rule, changes))
    default = next((r for r in rows if r.code == DEFAULT_CODE), None)
    places = sorted((r for r in rows if r.code != DEFAULT_CODE), key=lambda r: r.name)
    html = render_template("minimum_ages.html", default=default, places=places, today=now.date())
    return Response(html, mimetype="text/html")


def _describe(version: RuleVersion) -> str:
    local = version.effective_from.astimezone(EARLIEST_ZONE)
    when = (
        f"{local:%d %B %Y}"
        if local.time() == time()
        else f"{version.effective_from.astimezone(UTC):%d %B %Y %H:%M} UTC"
    )
    if version.retired:
        return f"From {when}: no specific rule (the general minimum applies)"
    if version.status is RuleStatus.SUSPENDED:
        return f"From {when}: suspended by a court; the general minimum applies"
    return f"From {when}: {version.minimum_age}"
