"""Request and response shapes of POST /v1/age-checks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

import marshmallow as ma
from marshmallow import types

from agegate.accounts import ACCOUNT_ID_PATTERN, ACCOUNT_ID_RULE
from agegate.age_checks.models import Outcome, Reason
from agegate.errors import ValidationError, flatten_messages
from agegate.fields import Text
from agegate.jurisdictions import codes

# The fields whose shape has a code of its own (an account id has the same code on every
# path); any other malformed field, or one the schema does not know, is validation_failed.
_FIELD_CODES = {"session_id": "invalid_session_id", "account_id": "invalid_account_id"}


def _account_id(value: str) -> None:
    if ACCOUNT_ID_PATTERN.match(value) is None:
        raise ma.ValidationError(f"not an account id: {ACCOUNT_ID_RULE}")


# What the common, well-formed body holds: each field's JSON type. Lengths and the account id
# pattern are checked below, as the fields' validators would.
_PLAIN_TYPES: dict[str, type] = {
    "date_of_birth": str,
    "age": int,
    "country": str,
    "subdivision": str,
    "session_id": str,
    "account_id": str,
}
SESSION_ID_MAX = 256
PLACE_MAX = codes.MAX_INPUT
_MAX_CHARS = {"country": PLACE_MAX, "subdivision": PLACE_MAX, "session_id": SESSION_ID_MAX}


def _plainly_valid(data: Mapping[str, Any]) -> bool:
    """True when marshmallow would load data unchanged: known fields of the exact JSON types,
    within the validators' bounds. Anything else (errors included) takes the full path."""
    for name, value in data.items():
        kind = _PLAIN_TYPES.get(name)
        if type(value) is not kind:  # bool is not int here, as in the schema
            return False
        # ASCII without NUL is text every store keeps (fields.Text); other text is checked
        # by the full path, and so is text over its length limit.
        if isinstance(value, str) and not (
            value.isascii()
            and "\x00" not in value
            and len(value) <= _MAX_CHARS.get(name, len(value))
        ):
            return False
    if data.get("session_id") == "":
        return False
    account_id = data.get("account_id")
    return account_id is None or ACCOUNT_ID_PATTERN.match(account_id) is not None


class AgeCheckArgs(ma.Schema):
    date_of_birth = Text(
        metadata={
            "description": "YYYY-MM-DD, or YYYY-MM / YYYY when the day is not known; never stored",
            "example": "2012-05-14",
        }
    )
    age = ma.fields.Integer(strict=True, metadata={"description": "whole years, instead of a date"})
    country = Text(
        validate=ma.validate.Length(max=PLACE_MAX),
        metadata={"description": "ISO 3166-1 alpha-2; absent → default rule"},
    )
    subdivision = Text(
        validate=ma.validate.Length(max=PLACE_MAX),
        metadata={"description": "ISO 3166-2, e.g. CA-QC"},
    )
    session_id = Text(
        validate=ma.validate.Length(min=1, max=SESSION_ID_MAX),
        metadata={"description": "opaque signup session or device id; stored only as a keyed hash"},
    )
    account_id = Text(validate=_account_id)

    def load(
        self,
        data: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        *,
        many: bool | None = None,
        partial: bool | types.StrSequenceOrSet | None = None,
        unknown: types.UnknownOption | None = None,
    ) -> Any:
        """The age check's hot path: a well-formed body is returned as a copy without running
        marshmallow's field machinery (about a fifth of the view's own time, profiled), with
        the same result; anything else is loaded, and its errors worded, by marshmallow."""
        if many is partial is unknown is None and isinstance(data, dict) and _plainly_valid(data):
            return dict(data)
        return super().load(data, many=many, partial=partial, unknown=unknown)

    def handle_error(self, error: ma.ValidationError, data: Any, **kwargs: Any) -> NoReturn:
        """One stable code per kind of bad input; the messages never repeat what was sent."""
        messages = error.normalized_messages()
        failing = [name for name in self.fields if name in messages]
        codes = [_FIELD_CODES.get(name, "validation_failed") for name in failing]
        unknown = len(failing) < len(messages)
        code = codes[0] if codes and not unknown and len(set(codes)) == 1 else "validation_failed"
        raise ValidationError(
            "the age check request is invalid; see errors",
            errors=flatten_messages({"json": messages}),
            code=code,
        )


class JurisdictionRefSchema(ma.Schema):
    code = ma.fields.String()
    rule_version = ma.fields.Integer(allow_none=True)
    citation = ma.fields.String()
    matched = ma.fields.String(metadata={"description": "subdivision, country, default or floor"})


class AgeCheckSchema(ma.Schema):
    id = ma.fields.UUID()
    outcome = ma.fields.Enum(Outcome, by_value=True)
    reason = ma.fields.Enum(Reason, by_value=True)
    minimum_age = ma.fields.Integer()
    jurisdiction = ma.fields.Nested(JurisdictionRefSchema)
    checked_at = ma.fields.DateTime()
