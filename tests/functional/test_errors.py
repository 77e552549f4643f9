"""Every error is RFC 9457 problem details with a stable code; a 500 never echoes exception text."""

from __future__ import annotations

import json
from collections.abc import Callable

import marshmallow as ma
import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_smorest import Blueprint

from agegate.api_keys.auth import requires
from agegate.api_keys.models import Scope

PROBLEM = "application/problem+json"
FLAG = {"reason": "user_report", "confidence": "suspected"}


class _EchoArgs(ma.Schema):
    name = ma.fields.String(required=True, validate=ma.validate.Length(max=5))
    count = ma.fields.Integer(required=True)


@pytest.fixture
def probe_client(app: Flask) -> FlaskClient:
    """The app plus two probe views: one that takes a JSON body, one that crashes."""
    blp = Blueprint("probe", __name__)

    @blp.post("/_probe/echo")
    @requires(Scope.CASES_WRITE)
    @blp.arguments(_EchoArgs)
    def echo(args: dict[str, object]) -> dict[str, object]:
        return args

    @blp.get("/_probe/boom")
    @requires(Scope.CASES_READ)
    def boom() -> None:
        raise RuntimeError("db password is hunter2-secret")

    app.register_blueprint(blp)
    return app.test_client()


def assert_problem(response, status: int, code: str) -> dict[str, object]:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.data
    assert response.mimetype == PROBLEM
    body = response.get_json(force=True)
    assert body["status"] == status
    assert body["code"] == code
    assert body["title"] and body["detail"] and body["type"] == "about:blank"
    return body  # type: ignore[no-any-return]


def test_unknown_route_is_404(client: FlaskClient) -> None:
    assert_problem(client.get("/v1/nothing-here"), 404, "not_found")


def test_405_keeps_the_allow_header(client: FlaskClient) -> None:
    response = client.delete("/healthz")
    assert_problem(response, 405, "method_not_allowed")
    assert set(response.headers["Allow"].replace(" ", "").split(",")) == {"GET", "HEAD", "OPTIONS"}


def test_malformed_json_is_400(
    probe_client: FlaskClient, make_key: Callable[..., dict[str, str]]
) -> None:
    response = probe_client.post(
        "/_probe/echo",
        data='{"name": "ab", ',
        headers={**make_key("cases:write"), "Content-Type": "application/json"},
    )
    assert_problem(response, 400, "malformed_json")


def test_wrong_media_type_is_415(
    probe_client: FlaskClient, make_key: Callable[..., dict[str, str]]
) -> None:
    response = probe_client.post(
        "/_probe/echo",
        data="name=ab",
        headers={**make_key("cases:write"), "Content-Type": "application/x-www-form-urlencoded"},
    )
    body = assert_problem(response, 415, "unsupported_media_type")
    assert "application/json" in str(body["detail"])


def test_validation_is_422_with_errors_per_field(
    probe_client: FlaskClient, make_key: Callable[..., dict[str, str]]
) -> None:
    response = probe_client.post(
        "/_probe/echo", json={"name": "far-too-long", "extra": 1}, headers=make_key("cases:write")
    )
    body = assert_problem(response, 422, "validation_failed")
    errors = body["errors"]
    assert isinstance(errors, dict)
    assert set(errors) == {"name", "count", "_body"}
    assert errors["_body"] == ["1 unknown field"]  # counted, never named
    assert all(isinstance(m, list) and m for m in errors.values())
    text = response.get_data(as_text=True)
    assert "far-too-long" not in text and "extra" not in text


def test_valid_body_passes(
    probe_client: FlaskClient, make_key: Callable[..., dict[str, str]]
) -> None:
    response = probe_client.post(
        "/_probe/echo", json={"name": "ab", "count": 2}, headers=make_key("cases:write")
    )
    assert response.status_code == 200
    assert response.get_json() == {"name": "ab", "count": 2}


RULE = {"minimum_age": 16, "effective_from": "2020-01-01", "status": "in_force", "citation": "x"}


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("PUT", "/v1/jurisdictions/DE", {**RULE, "change_reason": "typo\x00"}, "change_reason"),
        ("PUT", "/v1/jurisdictions/DE", {**RULE, "citation": "GDPR \ud800"}, "citation"),
        ("POST", "/v1/accounts/acct-1/flags", {**FLAG, "evidence": "\x00"}, "evidence"),
        ("POST", "/v1/accounts/acct-1/legal-holds", {"reason": "a\udfff"}, "reason"),
        ("POST", "/v1/age-checks", {"age": 30, "session_id": "s-\ud800"}, "session_id"),
        ("GET", "/v1/cases?account_id=acct%00", None, "account_id"),
        ("DELETE", "/v1/jurisdictions/DE?change_reason=%00", None, "change_reason"),
    ],
)
def test_text_that_no_store_can_keep_is_a_422(
    client: FlaskClient,
    make_key: Callable[..., dict[str, str]],
    method: str,
    path: str,
    body: dict[str, object] | None,
    field: str,
) -> None:
    # Found by fuzzing: NUL was a 500 on PostgreSQL, an unpaired surrogate a 500 on both.
    headers = make_key(*(s.value for s in Scope))
    if body is not None:
        headers["Content-Type"] = "application/json"
    data = None if body is None else json.dumps(body)  # ASCII: "\ud800" travels escaped
    response = client.open(path, method=method, data=data, headers=headers)
    assert response.status_code == 422, response.data
    problem = response.get_json(force=True)
    assert problem["code"] in {"validation_failed", "invalid_session_id"}
    assert problem["errors"][field] == ["must not contain NUL or unpaired surrogate characters"]


def test_too_large_body_is_413(
    app: Flask, probe_client: FlaskClient, make_key: Callable[..., dict[str, str]]
) -> None:
    size = app.config["MAX_CONTENT_LENGTH"] + 1
    response = probe_client.post(
        "/_probe/echo",
        data=b"x" * size,
        headers={**make_key("cases:write"), "Content-Type": "application/json"},
    )
    body = assert_problem(response, 413, "payload_too_large")
    limit = app.config["MAX_CONTENT_LENGTH"]
    assert body["limit_bytes"] == limit
    assert body["detail"] == f"The request body is larger than the limit of {limit} bytes."


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/age-checks"),
        ("POST", "/v1/accounts/acct-1/flags"),
        ("PUT", "/v1/jurisdictions/DE"),
        ("POST", "/v1/jurisdictions/import?change_reason=test"),
    ],
)
@pytest.mark.parametrize("opening", ["[", '{"a":'])
def test_json_nested_too_deeply_to_read_is_400(
    client: FlaskClient,
    make_key: Callable[..., dict[str, str]],
    method: str,
    path: str,
    opening: str,
) -> None:
    depth = 50_000  # far beyond the recursion limit, well within the size limit
    closing = "]" if opening == "[" else "}"
    data = opening * depth + "1" + closing * depth
    response = client.open(
        path,
        method=method,
        data=data,
        headers={**make_key(*(s.value for s in Scope)), "Content-Type": "application/json"},
    )
    assert_problem(response, 400, "malformed_json")


def test_500_never_echoes_the_exception(
    probe_client: FlaskClient,
    make_key: Callable[..., dict[str, str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    response = probe_client.get("/_probe/boom", headers=make_key("cases:read"))
    assert_problem(response, 500, "internal_error")
    assert "hunter2" not in response.get_data(as_text=True)
    assert "RuntimeError" not in response.get_data(as_text=True)
    assert any("unhandled error" in r.message for r in caplog.records)
