"""The age check's fast path through its schema loads exactly what marshmallow would."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agegate.age_checks.schemas import AgeCheckArgs
from agegate.errors import ValidationError

SCHEMA = AgeCheckArgs()

json_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=300),
    st.sampled_from(["acct-1.example", "a" * 128, "a" * 129, "-bad", "ok\n", "", "x" * 257]),
    # Text no store can keep (fields.Text), and text that is fine but not ASCII.
    st.sampled_from(["a\x00b", "\ud800", "x\udfff", "Zoë", "2001-02-03\x00"]),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
bodies = st.dictionaries(
    st.sampled_from([*SCHEMA.fields, "unknown", "Age"]), json_values, max_size=7
)


def full_load(data: dict[str, Any]) -> dict[str, Any] | str:
    """What marshmallow itself makes of data: the loaded dict, or the error code."""
    try:
        loaded: dict[str, Any] = ma.Schema.load(SCHEMA, data)
    except ValidationError as exc:
        return exc.code
    return loaded


# No deadline: on a busy shared machine a single example can take longer than the default.
@settings(deadline=None)
@given(bodies)
def test_the_fast_path_agrees_with_marshmallow(data: dict[str, Any]) -> None:
    try:
        loaded: dict[str, Any] | str = SCHEMA.load(data)
    except ValidationError as exc:
        loaded = exc.code
    assert loaded == full_load(data)
    if isinstance(loaded, dict):
        assert loaded is not data  # a copy: the view may pop from it


@pytest.mark.parametrize(
    "data",
    [
        {"date_of_birth": "2001-02-03", "country": "DE", "session_id": "s-1"},
        {"age": 30, "account_id": "acct-1.example", "subdivision": "CA-QC"},
        {"age": True},
        {"session_id": ""},
        {"account_id": "acct\n"},
        {"country": None},
        {"dob": "2001-02-03"},
        {"session_id": "s\x00"},
        {"country": "\ud800"},
        {"session_id": "Zoë"},
    ],
)
def test_typical_bodies_agree(data: dict[str, Any]) -> None:
    test_the_fast_path_agrees_with_marshmallow.hypothesis.inner_test(data)  # type: ignore[attr-defined]
