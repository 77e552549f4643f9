"""Request and response schemas of the jurisdiction endpoints."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any

import marshmallow as ma

from agegate.fields import Text
from agegate.jurisdictions import codes
from agegate.jurisdictions.models import MAX_AGE, MIN_AGE_FLOOR, RuleStatus

# A bare date means the first instant of that date anywhere on Earth: 00:00 at UTC+14.
EARLIEST_ZONE = timezone(timedelta(hours=14))
_DATE_ONLY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def parse_instant(text: str) -> datetime:
    """`2025-01-01` → 2025-01-01T00:00+14:00; a timestamp must carry its offset."""
    text = text.strip()
    try:
        if _DATE_ONLY.fullmatch(text):
            day = date.fromisoformat(text)
            return datetime.combine(day, time(), EARLIEST_ZONE).astimezone(UTC)
        instant = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        if instant.tzinfo is None:
            raise ma.ValidationError(
                "a timestamp needs an offset (e.g. +01:00 or Z), or give a bare date"
            )
        return instant.astimezone(UTC)
    except (ValueError, OverflowError):
        raise ma.ValidationError(
            "not a valid ISO 8601 date (YYYY-MM-DD) or timestamp with offset"
        ) from None


def format_instant(instant: datetime) -> str:
    """Dates legal wrote as bare dates read back as that date at +14:00; others in UTC."""
    local = instant.astimezone(EARLIEST_ZONE)
    if local.time() == time():
        return local.isoformat()
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")


class Instant(ma.fields.Field[datetime]):
    """An ISO 8601 instant with offset, or a bare date (first instant anywhere on Earth)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        if not isinstance(value, str):
            raise ma.ValidationError("must be a string: YYYY-MM-DD or an ISO 8601 timestamp")
        return parse_instant(value)

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return None if value is None else format_instant(value)


_text = ma.validate.Length(min=1, max=2000)


def _not_blank(value: str) -> None:
    if not value.strip():
        raise ma.ValidationError("must not be blank")


_url = ma.validate.URL(schemes={"http", "https"}, error="not an http(s) URL")


def _url_or_empty(value: str) -> None:
    if value:
        _url(value)


class RuleFieldsArgs(ma.Schema):
    minimum_age = ma.fields.Integer(
        required=True, strict=True, validate=ma.validate.Range(MIN_AGE_FLOOR, MAX_AGE)
    )
    effective_from = Instant(
        required=True,
        metadata={
            "type": "string",
            "example": "2025-01-01",
            "description": "bare date = 00:00 at UTC+14",
        },
    )
    status = ma.fields.Enum(RuleStatus, by_value=True, required=True)
    citation = Text(required=True, validate=[_text, _not_blank])
    notes = Text(load_default="", validate=ma.validate.Length(max=4000))
    source_url = Text(load_default="", validate=_url_or_empty)


class RuleArgs(RuleFieldsArgs):
    change_reason = Text(required=True, validate=[_text, _not_blank])


class ImportRowArgs(RuleFieldsArgs):
    code = Text(required=True, validate=ma.validate.Length(min=1, max=16))


class ImportBodyArgs(ma.Schema):
    rules = ma.fields.List(ma.fields.Dict(), required=True)


class ChangeReasonArgs(ma.Schema):
    change_reason = Text(required=True, validate=[_text, _not_blank])


class ImportQueryArgs(ChangeReasonArgs):
    dry_run = ma.fields.Boolean(load_default=False)
    replace = ma.fields.Boolean(load_default=False)


class OnArgs(ma.Schema):
    on = Instant(
        load_default=None, metadata={"type": "string", "description": "instant; default now"}
    )


class PageArgs(ma.Schema):
    cursor = Text(load_default=None)
    limit = ma.fields.Integer(load_default=50, validate=ma.validate.Range(1, 200))


class ListArgs(OnArgs, PageArgs):
    pass


class ResolveArgs(OnArgs):
    country = Text(load_default=None, validate=ma.validate.Length(max=codes.MAX_INPUT))
    subdivision = Text(load_default=None, validate=ma.validate.Length(max=codes.MAX_INPUT))


class RuleSchema(ma.Schema):
    code = ma.fields.String()
    minimum_age = ma.fields.Integer()
    effective_from = Instant(metadata={"type": "string", "format": "date-time"})
    status = ma.fields.Enum(RuleStatus, by_value=True)
    citation = ma.fields.String()
    notes = ma.fields.String()
    source_url = ma.fields.String()
    version = ma.fields.Integer()
    retired = ma.fields.Boolean(metadata={"description": "a retirement (DELETE) version"})
    changed_by = ma.fields.String()
    changed_at = ma.fields.DateTime()
    change_reason = ma.fields.String()


class RuleListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(RuleSchema))
    next_cursor = ma.fields.String(allow_none=True)
    on = ma.fields.DateTime()


class CodeSchema(ma.Schema):
    code = ma.fields.String()
    name = ma.fields.String()
    current = ma.fields.Nested(RuleSchema, allow_none=True)
    scheduled = ma.fields.List(ma.fields.Nested(RuleSchema))
    tracked = ma.fields.List(
        ma.fields.Nested(RuleSchema),
        metadata={"description": "proposals and the suspended rule: kept, never applied"},
    )


class HistorySchema(ma.Schema):
    code = ma.fields.String()
    items = ma.fields.List(ma.fields.Nested(RuleSchema))
    next_cursor = ma.fields.String(allow_none=True)


class StepSchema(ma.Schema):
    level = ma.fields.String()
    code = ma.fields.String()
    outcome = ma.fields.String(metadata={"enum": ["applied", "no_rule", "suspended", "retired"]})
    version = ma.fields.Integer(allow_none=True)


class ResolutionSchema(ma.Schema):
    rule = ma.fields.Nested(RuleSchema, allow_none=True)
    matched = ma.fields.String(allow_none=True)
    on = ma.fields.DateTime()
    steps = ma.fields.List(ma.fields.Nested(StepSchema))


class ImportResultSchema(ma.Schema):
    dry_run = ma.fields.Boolean()
    added = ma.fields.List(ma.fields.Dict())
    unchanged = ma.fields.Integer()
    retired = ma.fields.List(ma.fields.String())
