"""Walk every endpoint with no key, a bad key, a revoked key and every single scope."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.routing import Rule, UUIDConverter
from werkzeug.test import TestResponse

from agegate.api_keys.models import Scope

# Served by flask-smorest and our docs assets: public by design.
DOC_ENDPOINTS = {"api-docs.openapi_json", "api-docs.openapi_swagger_ui", "docs_assets.docs_asset"}
SAMPLE_PATH_VALUES = {"filename": "swagger-ui.css"}


def _operations(app: Flask) -> Iterator[tuple[Rule, str]]:
    for rule in app.url_map.iter_rules():
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            yield rule, method


def _url(rule: Rule) -> str:
    def sample(arg: str) -> str:
        if isinstance(rule._converters[arg], UUIDConverter):
            return "00000000-0000-4000-8000-000000000000"
        return SAMPLE_PATH_VALUES.get(arg, "XX")

    return rule.build({arg: sample(arg) for arg in rule.arguments})[1]


def _call(client: FlaskClient, method: str, url: str, headers: dict[str, str]) -> TestResponse:
    body = {} if method in ("POST", "PUT", "PATCH") else None
    response = client.open(url, method=method, json=body, headers=headers)
    response.close()  # file responses (docs assets) hold an open file until closed
    return response


def test_every_endpoint_declares_who_may_call_it(app: Flask) -> None:
    undeclared = [
        rule.endpoint
        for rule, _ in _operations(app)
        if rule.endpoint not in DOC_ENDPOINTS
        and not hasattr(app.view_functions[rule.endpoint], "required_scope")
    ]
    assert undeclared == []


def test_every_endpoint_answers_each_scope_as_declared(
    app: Flask, client: FlaskClient, make_key: Callable[..., dict[str, str]]
) -> None:
    keys = {scope: make_key(scope.value) for scope in Scope}
    seen_scoped = 0
    for rule, method in _operations(app):
        view = app.view_functions[rule.endpoint]
        required: Scope | None = getattr(view, "required_scope", None)
        url = _url(rule)
        if required is None:
            assert _call(client, method, url, {}).status_code < 400, (method, url)
            continue
        seen_scoped += 1
        anonymous = _call(client, method, url, {})
        assert anonymous.status_code == 401, (method, url)
        assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
        forged = _call(
            client, method, url, {"Authorization": "Bearer agk_0000000000000000_" + "A" * 43}
        )
        assert forged.status_code == 401, (method, url)
        for scope, headers in keys.items():
            status = _call(client, method, url, headers).status_code
            if scope is required:
                assert status not in (401, 403), (method, url, scope)
            else:
                assert status == 403, (method, url, scope, status)
    assert seen_scoped == sum(
        1
        for r, _ in _operations(app)
        if getattr(app.view_functions[r.endpoint], "required_scope", None)
    )


@pytest.mark.parametrize(
    "header",
    ["", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer not-a-key", "Token agk_x"],
)
def test_malformed_authorization_is_401(app: Flask, header: str) -> None:
    from agegate.api_keys.auth import current_principal
    from agegate.errors import AuthenticationError

    with (
        app.test_request_context(headers={"Authorization": header}),
        pytest.raises(AuthenticationError),
    ):
        current_principal()


def test_key_is_stored_hashed_and_revocation_takes_effect(
    app: Flask, make_key: Callable[..., dict[str, str]]
) -> None:
    from sqlalchemy import select

    from agegate.api_keys import service
    from agegate.api_keys.models import ApiKey
    from agegate.extensions import db

    headers = make_key("cases:read")
    plaintext = headers["Authorization"].removeprefix("Bearer ")

    def authenticate(presented: str) -> object:
        with db.engine.connect().execution_options(sqlite_begin="DEFERRED") as conn:
            return service.authenticate(conn, presented)

    with app.app_context(), db.new_session() as s:
        stored = s.scalars(select(ApiKey)).one()
        assert plaintext not in (stored.secret_sha256, stored.lookup_id)
        assert plaintext.split("_", 2)[2] not in repr(stored.__dict__)
        assert authenticate(plaintext) is not None
        # A key that differs in its last character is no key at all.
        assert authenticate(plaintext[:-1] + ("A" if plaintext[-1] != "A" else "B")) is None
        service.revoke_key(s, name=stored.name, actor="test")
        s.commit()
        assert authenticate(plaintext) is None


class _FrozenSecond:
    """time for the rate limiter: one second that does not end while the test runs."""

    def __init__(self) -> None:
        import time

        self._real = time
        self._now = float(int(time.time()))

    def time(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._real.monotonic()


@pytest.fixture
def flood_app(
    app_factory: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., tuple[Flask, list[str]]]:
    """flood_app(**settings) → an app with a budget of 3 failures a second, all within one
    second, and the list of its key lookups (each one database read)."""
    from agegate.api_keys import auth, ratelimit

    reads: list[str] = []
    real = auth.authenticate

    def counted(conn: object, presented: str) -> object:
        reads.append(presented)
        return real(conn, presented)  # type: ignore[arg-type]

    monkeypatch.setattr(ratelimit, "time", _FrozenSecond())
    monkeypatch.setattr(auth, "authenticate", counted)

    def make(**settings: object) -> tuple[Flask, list[str]]:
        return app_factory(auth_failures_per_second=3, **settings), reads

    return make


def unknown_key(i: int) -> dict[str, str]:
    return {"Authorization": f"Bearer agk_{i:016x}_{'x' * 40}"}


def test_failed_authentication_is_limited_per_address_and_spares_valid_keys(
    flood_app: Callable[..., tuple[Flask, list[str]]], make_key: Callable[..., dict[str, str]]
) -> None:
    valid = make_key("cases:read")  # in the database the flooded app reads
    app, reads = flood_app()
    client = app.test_client()
    here, elsewhere = {"REMOTE_ADDR": "198.51.100.7"}, {"REMOTE_ADDR": "198.51.100.8"}
    assert client.get("/v1/cases", headers=valid, environ_base=here).status_code == 200
    statuses = [
        client.get("/v1/cases", headers=unknown_key(i), environ_base=here).status_code
        for i in range(20)
    ]
    statuses += [client.get("/v1/cases", environ_base=here).status_code for _ in range(5)]
    assert statuses[:3] == [401, 401, 401] and set(statuses[3:]) == {429}
    assert len(reads) == 4  # one valid key, three unknown ones: the flood read nothing
    # A valid key is never slowed: it is known, so no lookup waits on the budget.
    assert client.get("/v1/cases", headers=valid, environ_base=here).status_code == 200
    # Another address has its own budget.
    other = client.get("/v1/cases", headers=unknown_key(99), environ_base=elsewhere)
    assert other.status_code == 401


@pytest.mark.parametrize("trusted", [0, 1])
def test_the_client_address_comes_from_x_forwarded_for_only_when_proxies_are_trusted(
    flood_app: Callable[..., tuple[Flask, list[str]]], trusted: int
) -> None:
    app, _ = flood_app(trusted_proxies=trusted)
    client = app.test_client()
    proxy = {"REMOTE_ADDR": "10.0.0.2"}
    statuses = []
    for i in range(10):
        # Each request forges another first hop; the proxy appends the address it saw.
        forwarded = {"X-Forwarded-For": f"203.0.113.{i}, 192.0.2.50", **unknown_key(i)}
        statuses.append(client.get("/v1/cases", headers=forwarded, environ_base=proxy).status_code)
    assert statuses[:3] == [401, 401, 401] and set(statuses[3:]) == {429}
    if trusted:  # the client is 192.0.2.50, whatever the forged hop says; the proxy is not
        direct = client.get("/v1/cases", headers=unknown_key(50), environ_base=proxy)
        assert direct.status_code == 401
    else:  # X-Forwarded-For is not believed: everything counts against the proxy's address
        other = {"X-Forwarded-For": "192.0.2.99", **unknown_key(51)}
        assert client.get("/v1/cases", headers=other, environ_base=proxy).status_code == 429
