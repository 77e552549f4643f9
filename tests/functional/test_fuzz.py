"""Fuzzing: schemathesis makes requests for every operation in /openapi.json and sends them to
the app in process, with a key that holds the operation's scope and with credentials that must
be refused. Whatever it sends, agegate answers without a 5xx, every error is a problem details
body as errors.py renders it, and every response is what the spec says: a status the operation
documents (not just `default`), a documented content type, a body that fits the schema.

Runs are deterministic (Hypothesis derandomized), so CI sees the same requests every time.
`schemathesis.pytest.from_fixture`, the loader meant for an app made by fixtures, does not run
on pytest 9.2 (it sets `Node._nodeid`, which pytest no longer has), so each operation's
schemathesis strategy is driven by a Hypothesis test here instead.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from http import HTTPStatus
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.schemas import APIOperation

from agegate.api_keys import service as api_keys
from agegate.api_keys.models import Scope
from agegate.extensions import db
from agegate.remediation.setup import make_worker
from agegate.remediation.targets.base import PurgeContext, TargetError, checked_account_id

CONFIG = schemathesis.Config.from_dict(
    {
        # The tests set Authorization themselves, per run; a generated one would be overridden
        # while schemathesis believed it had sent (or left out) its own.
        "generation": {"with-security-parameters": False},
        # This check wants every request that fits the schema to succeed. agegate also refuses,
        # with a documented 422, what a schema cannot express: codes that are not in ISO 3166,
        # impossible or future birth dates, cursors it did not give out, both or neither of
        # date_of_birth and age. Those 422s still go through every other check.
        "checks": {"positive_data_acceptance": {"enabled": False}},
    }
)
# Examples per operation: with a key holding its scope, then with each kind of bad
# credentials. Together about 20 s on SQLite and 30 s on PostgreSQL on a shared two-core
# machine.
EXAMPLES_WITH_KEY = 150
EXAMPLES_WITHOUT = 15
PROBLEM = "application/problem+json"
SNAKE_CASE = re.compile(r"[a-z][a-z0-9_]*")

SEED_CSV = """code,minimum_age,effective_from,status,citation,notes,source_url
default,13,2000-01-01,in_force,Platform floor,,
DE,16,2018-05-25,in_force,GDPR Art. 8(1),,https://law.example/de
CA-QC,14,2023-09-22,in_force,Law 25,,
US,13,2000-04-21,in_force,COPPA,,
US,16,2031-01-01,proposed,A bill,,
"""


class FuzzTarget:
    """An in-memory purge target; purging `acct-failing` always fails, so a case can fail."""

    kind = "memory"
    name = "platform"

    def __init__(self) -> None:
        self.items = {"acct-done": 3, "acct-failing": 2}

    def check(self) -> None:
        return None

    def count(self, account_id: str) -> int:
        return self.items.get(checked_account_id(account_id), 0)

    def purge_batch(self, account_id: str, limit: int, context: PurgeContext) -> int:
        if account_id == "acct-failing":
            raise TargetError("the platform refused (fuzz seed)")
        purged = min(limit, self.count(account_id))
        self.items[account_id] = self.count(account_id) - purged
        return purged


@dataclass
class Seeded:
    """What the seed made, by the name of the field or parameter that refers to it."""

    app: Flask
    bearer: dict[str, str]
    values: dict[str, list[Any]]

    def open_case(self, account_id: str) -> str:
        """A new case in `open`: one that dismiss or expedite can still act on."""
        flagged = self.app.test_client().post(
            f"/v1/accounts/{account_id}/flags",
            json={"reason": "user_report", "confidence": "suspected"},
            headers=self.bearer,
        )
        assert flagged.status_code == 201
        return str(flagged.get_json()["case"]["id"])


@dataclass
class Exercised:
    """Per operation label: how many examples ran and which statuses came back."""

    statuses: dict[str, dict[int, int]] = field(default_factory=dict)

    def record(self, label: str, status: int) -> None:
        counts = self.statuses.setdefault(label, {})
        counts[status] = counts.get(status, 0) + 1


@pytest.fixture
def app(app_factory: Callable[..., Flask]) -> Flask:
    # The rate limit is tested on its own; here it would only turn requests into 429s.
    application = app_factory(rate_limit_per_second=1_000_000, max_attempts=1)
    application.extensions["agegate.targets"] = (FuzzTarget(),)
    return application


def new_key(app: Flask, name: str, scopes: list[str], *, revoked: bool = False) -> str:
    with app.app_context(), db.new_session() as s:
        _, plaintext = api_keys.create_key(s, name=name, scopes=scopes, actor="test")
        if revoked:
            api_keys.revoke_key(s, name=name, actor="test")
        s.commit()
    return plaintext


@pytest.fixture
def seeded(app: Flask) -> Seeded:
    """Rules, cases in several states and a hold, so that ids in paths and bodies are real."""
    bearer = {"Authorization": f"Bearer {new_key(app, 'seed', [s.value for s in Scope])}"}
    client = app.test_client()
    imported = client.post(
        "/v1/jurisdictions/import?change_reason=fuzz+seed",
        data=SEED_CSV,
        headers={**bearer, "Content-Type": "text/csv"},
    )
    assert imported.status_code == 200, imported.get_json()
    cases = {}
    for account, confidence in [
        ("acct-done", "confirmed"),
        ("acct-failing", "confirmed"),
        ("acct-open", "suspected"),
    ]:
        flagged = client.post(
            f"/v1/accounts/{account}/flags",
            json={"reason": "other", "confidence": confidence},
            headers=bearer,
        )
        assert flagged.status_code == 201
        cases[account] = flagged.get_json()["case"]["id"]
    worker = make_worker(app)
    while worker.run_once():
        pass
    states = {
        account: client.get(f"/v1/cases/{case_id}", headers=bearer).get_json()["state"]
        for account, case_id in cases.items()
    }
    assert states == {
        "acct-done": "completed",
        "acct-failing": "failed",
        "acct-open": "awaiting_purge",
    }
    hold = client.post(
        "/v1/accounts/acct-held/legal-holds", json={"reason": "litigation"}, headers=bearer
    )
    assert hold.status_code == 201
    return Seeded(
        app,
        bearer,
        {
            "code": ["DE", "default", "CA-QC", "us", "FR"],
            "account_id": [*cases, "acct-held", "acct-new"],
            "case_id": list(cases.values()),
            "hold_id": [hold.get_json()["id"]],
        },
    )


def chosen_values(seeded: Seeded) -> dict[str, st.SearchStrategy[Any]]:
    """Values for fields whose rules a schema cannot carry: real codes, dates and seeded ids,
    so that requests get past agegate's own validation to the code behind it, and a few near
    misses (UK, 2013-02-29, an age of 12) at its edge."""
    day = st.dates(date(1890, 1, 1), date(2040, 12, 31))
    rule = st.fixed_dictionaries(
        {
            "code": st.sampled_from(["DE", "FR", "CA-QC", "ES"]),
            "minimum_age": st.integers(13, 25),
            "effective_from": day.map(date.isoformat),
            "status": st.sampled_from(["in_force", "proposed", "suspended"]),
            "citation": st.just("A statute"),
        }
    )
    return {
        **{name: st.sampled_from(values) for name, values in seeded.values.items()},
        "country": st.sampled_from(["DE", "CA", "us", "FR", "UK"]),
        "subdivision": st.sampled_from(["CA-QC", "US-CA", "DE-BY"]),
        "date_of_birth": st.one_of(
            day.map(date.isoformat), day.map(lambda d: d.isoformat()[:7]), st.just("2013-02-29")
        ),
        "age": st.integers(-1, 131),
        "effective_from": day.map(date.isoformat),
        "on": day.map(date.isoformat),
        "minimum_age": st.integers(12, 26),
        "targets": st.sampled_from([None, ["platform"], ["elsewhere"]]),
        "rules": st.lists(rule, max_size=3),
        "text/csv": st.lists(rule, max_size=3).map(as_csv),
        "limit": st.integers(1, 3),
    }


# Free text where a schema allows any string, and strings no generator sends: NUL (which
# PostgreSQL cannot store) and, in a JSON body, unpaired surrogates (which have no UTF-8).
TEXT_FIELDS = {"citation", "notes", "change_reason", "reason", "evidence", "session_id"}
UNSTORABLE = {
    "query": st.sampled_from(["\x00", "ticket\x001"]),
    "body": st.sampled_from(["\x00", "ticket\x001", "\ud800", "ticket \udfff"]),
}


def as_csv(rules: list[dict[str, Any]]) -> str:
    lines = ["code,minimum_age,effective_from,status,citation"]
    lines += [",".join(str(rule[c]) for c in lines[0].split(",")) for rule in rules]
    return "\n".join(lines) + "\n"


def choose(case: Any, data: st.DataObject, values: dict[str, Any]) -> None:
    """Swap some fields of a valid case for chosen values, and some free text for text no
    store can keep."""
    if case.meta.generation.mode is not GenerationMode.POSITIVE:
        return  # a negative case must stay invalid; schemathesis knows which part is
    # Hypothesis tries False first (its simplest boolean): swapping a chosen value in comes
    # first, swapping unstorable text in comes later.
    if case.media_type in values and not data.draw(st.booleans()):
        case.body = data.draw(values[case.media_type])
    for location, container in [
        ("path", case.path_parameters),
        ("query", case.query),
        ("body", case.body),
    ]:
        if not isinstance(container, dict):
            continue
        for name in sorted(container):
            if name in values and not data.draw(st.booleans()):
                container[name] = data.draw(values[name])
            elif name in TEXT_FIELDS and location in UNSTORABLE and data.draw(st.booleans()):
                container[name] = data.draw(UNSTORABLE[location])


def problem_details(ctx: Any, response: Any, case: Any) -> None:
    """An error is RFC 9457 problem details with the members errors.py renders."""
    status = response.status_code
    if status < 400:
        return
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.split(";")[0] == PROBLEM, f"a {status} sent as {content_type!r}"
    body = json.loads(response.content)
    assert body["type"] == "about:blank"
    assert body["title"] == HTTPStatus(status).phrase
    assert body["status"] == status
    assert isinstance(body["detail"], str) and body["detail"]
    # The operation's path, never the values in it; absent when no route matched (a
    # malformed path parameter).
    assert body.get("instance", case.path) == case.path, (body, case.path)
    assert SNAKE_CASE.fullmatch(body["code"]), body["code"]
    if status == 422:
        errors = body["errors"]
        assert errors and all(
            isinstance(messages, list) and all(isinstance(m, str) for m in messages)
            for messages in errors.values()
        ), errors
    else:
        assert "errors" not in body, body


def documented_status(ctx: Any, response: Any, case: Any) -> None:
    """The status is one the operation lists: `default` would let any status through."""
    documented = set(case.operation.definition.raw["responses"]) - {"default"}
    assert str(response.status_code) in documented, (
        f"{response.status_code} is not documented: {sorted(documented)}"
    )


CHECKS = [problem_details, documented_status]


def required_scope(operation: APIOperation) -> str | None:
    security = operation.definition.raw.get("security") or []
    return security[0]["bearerAuth"][0] if security else None


def operations(app: Flask) -> list[APIOperation]:
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app, config=CONFIG)
    loaded = [result.ok() for result in schema.get_all_operations()]
    assert len(loaded) >= 20, [op.label for op in loaded]
    return loaded


def fuzz(
    operation: APIOperation,
    strategy: st.SearchStrategy[Any],
    examples: int,
    send: Callable[[Any, st.DataObject], None],
) -> str | None:
    """Run `send` on up to `examples` generated cases; the failure Hypothesis settled on, if any."""

    @settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(case=strategy, data=st.data())
    def run(case: Any, data: st.DataObject) -> None:
        send(case, data)

    try:
        run()
    except (Exception, BaseExceptionGroup) as exc:  # schemathesis raises a FailureGroup
        return f"{operation.label}: {exc}"
    return None


def test_every_operation_with_a_key_that_holds_its_scope(app: Flask, seeded: Seeded) -> None:
    keys = {s.value: new_key(app, f"fuzz-{s.value.replace(':', '-')}", [s.value]) for s in Scope}
    values = chosen_values(seeded)
    exercised = Exercised()
    failures = []
    for operation in operations(app):
        scope = required_scope(operation)
        headers = {"Authorization": f"Bearer {keys[scope]}"} if scope else {}
        fields = values
        if any(p.name == "case_id" for p in operation.path_parameters):
            # The operations before this one may have closed every seeded case.
            fresh = [seeded.open_case(f"acct-{len(failures)}-{n}") for n in range(3)]
            fields = {**values, "case_id": st.sampled_from([*seeded.values["case_id"], *fresh])}

        def send(
            case: Any,
            data: st.DataObject,
            label: str = operation.label,
            headers: dict[str, str] = headers,
            fields: dict[str, Any] = fields,
        ) -> None:
            choose(case, data, fields)
            response = case.call_and_validate(headers=headers, additional_checks=CHECKS)
            exercised.record(label, response.status_code)

        strategy = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.NEGATIVE),
        )
        failures.append(fuzz(operation, strategy, EXAMPLES_WITH_KEY, send))
    report = "\n\n".join(f for f in failures if f)
    assert not report, report
    # Every operation got past validation to its own code at least once.
    unsuccessful = sorted(
        label
        for label, statuses in exercised.statuses.items()
        if not any(200 <= s < 300 for s in statuses)
    )
    assert not unsuccessful, json.dumps(exercised.statuses)


MALFORMED = [
    "",
    "Bearer",
    "Bearer ",
    "Basic YWdlZ2F0ZTpzZWNyZXQ=",
    "Bearer agk_",
    "Bearer agk_0123456789abcdef_" + "!" * 43,
    "Bearer not-a-key-at-all",
    "Token agk_0123456789abcdef_" + "a" * 43,
]


@pytest.mark.parametrize(
    "credentials", ["none", "malformed", "unknown", "wrong_secret", "revoked", "other_scopes"]
)
def test_every_operation_refuses_bad_credentials(
    app: Flask, seeded: Seeded, credentials: str
) -> None:
    real = new_key(app, "fuzz-real", [s.value for s in Scope])
    revoked = new_key(app, "fuzz-revoked", [s.value for s in Scope], revoked=True)
    all_but = {
        s.value: new_key(app, f"fuzz-all-but-{i}", [o.value for o in Scope if o is not s])
        for i, s in enumerate(Scope)
    }
    wrong_secret = real[:-1] + ("B" if real[-1] == "A" else "A")
    # The Authorization header to send, given the scope the operation requires (None: no
    # header at all).
    header: Callable[[str | None], st.SearchStrategy[str | None]] = {
        "none": lambda scope: st.none(),
        "malformed": lambda scope: st.sampled_from(MALFORMED),
        "unknown": lambda scope: st.from_regex(
            r"agk_[0-9a-f]{16}_[A-Za-z0-9_-]{43}", fullmatch=True
        ).map(lambda key: f"Bearer {key}"),
        "wrong_secret": lambda scope: st.just(f"Bearer {wrong_secret}"),
        "revoked": lambda scope: st.just(f"Bearer {revoked}"),
        "other_scopes": lambda scope: st.just(f"Bearer {all_but[scope] if scope else real}"),
    }[credentials]
    failures = []
    for operation in operations(app):
        scope = required_scope(operation)
        # None: a public operation, which answers whatever credentials come along.
        expected = None if scope is None else 403 if credentials == "other_scopes" else 401
        # Real ids in the path: the refusal must not depend on what the path names.
        path = {
            p.name: seeded.values[p.name][0]
            for p in operation.path_parameters
            if p.name in seeded.values
        }
        strategy = st.tuples(
            operation.as_strategy(GenerationMode.POSITIVE, path_parameters=path), header(scope)
        )

        def send(drawn: Any, data: st.DataObject, expected: int | None = expected) -> None:
            case, authorization = drawn
            headers = {} if authorization is None else {"Authorization": authorization}
            response = case.call_and_validate(headers=headers, additional_checks=CHECKS)
            if expected is None:
                assert 200 <= response.status_code < 300, response.content
                return
            assert response.status_code == expected, response.content
            if expected == 401:
                assert response.headers["www-authenticate"] == ['Bearer realm="agegate"']

        failures.append(fuzz(operation, strategy, EXAMPLES_WITHOUT, send))
    report = "\n\n".join(f for f in failures if f)
    assert not report, report
