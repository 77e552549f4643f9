"""Request and response shapes of flags and cases."""

from __future__ import annotations

import marshmallow as ma

from agegate.fields import Text
from agegate.flags.models import Confidence, FlagReason
from agegate.remediation.models import CaseState


class FlagArgs(ma.Schema):
    reason = ma.fields.Enum(FlagReason, by_value=True, required=True)
    confidence = ma.fields.Enum(Confidence, by_value=True, required=True)
    evidence = Text(
        load_default=None,
        validate=ma.validate.Length(max=500),
        metadata={"description": "a reference to evidence (ticket, report id), never content"},
    )


class FlagSchema(ma.Schema):
    id = ma.fields.UUID()
    account_id = ma.fields.String()
    reason = ma.fields.Enum(FlagReason, by_value=True)
    confidence = ma.fields.Enum(Confidence, by_value=True)
    created_at = ma.fields.DateTime()


class TimelineEntrySchema(ma.Schema):
    at = ma.fields.DateTime()
    event = ma.fields.String()
    actor = ma.fields.String()
    data = ma.fields.Dict()


class TargetProgressSchema(ma.Schema):
    name = ma.fields.String()
    kind = ma.fields.String()
    state = ma.fields.String()
    found = ma.fields.Integer()
    purged = ma.fields.Integer()
    remaining = ma.fields.Integer()
    attempts = ma.fields.Integer()
    last_error = ma.fields.String(allow_none=True)


class CaseSchema(ma.Schema):
    id = ma.fields.UUID()
    account_id = ma.fields.String()
    state = ma.fields.Enum(CaseState, by_value=True)
    confidence = ma.fields.Enum(Confidence, by_value=True)
    opened_at = ma.fields.DateTime()
    purge_after = ma.fields.DateTime(allow_none=True)
    closed_at = ma.fields.DateTime(allow_none=True)
    targets = ma.fields.List(ma.fields.Nested(TargetProgressSchema))
    last_error = ma.fields.String(allow_none=True)
    timeline = ma.fields.List(ma.fields.Nested(TimelineEntrySchema))


class FlagResultSchema(ma.Schema):
    flag = ma.fields.Nested(FlagSchema)
    case = ma.fields.Nested(CaseSchema)


class CaseListArgs(ma.Schema):
    # The type is stated for clients and renderers: apispec leaves it out of a by-value enum.
    state = ma.fields.Enum(CaseState, by_value=True, load_default=None, metadata={"type": "string"})
    account_id = Text(load_default=None, validate=ma.validate.Length(max=128))
    cursor = Text(load_default=None)
    limit = ma.fields.Integer(load_default=50, validate=ma.validate.Range(1, 200))


class CaseListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(CaseSchema))
    next_cursor = ma.fields.String(allow_none=True)


class DismissArgs(ma.Schema):
    reason = Text(required=True, validate=ma.validate.Length(min=1, max=2000))


class ExpediteArgs(ma.Schema):
    reason = Text(load_default=None, validate=ma.validate.Length(max=2000))


class HoldArgs(ma.Schema):
    reason = Text(required=True, validate=ma.validate.Length(min=1, max=2000))
    targets = ma.fields.List(
        Text(validate=ma.validate.Length(min=1, max=64)),
        load_default=None,
        allow_none=True,
        metadata={"description": "target names; omitted or null: every target"},
    )


class HoldSchema(ma.Schema):
    id = ma.fields.UUID()
    account_id = ma.fields.String()
    targets = ma.fields.List(ma.fields.String(), allow_none=True)
    reason = ma.fields.String()
    created_at = ma.fields.DateTime()
    released_at = ma.fields.DateTime(allow_none=True)


class ReceiptDocumentSchema(ma.Schema):
    receipt = ma.fields.Dict()
    signature = ma.fields.String(metadata={"description": "base64url Ed25519 over canonical JSON"})
    kid = ma.fields.String()


class JwksSchema(ma.Schema):
    keys = ma.fields.List(ma.fields.Dict())
