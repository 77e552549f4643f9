"""Flag intake (one open case per account, idempotent) and the case API."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from agegate.audit import service as audit
from agegate.extensions import db
from agegate.flags.models import Flag
from agegate.remediation.models import Case

FLAG = {"reason": "user_report", "confidence": "suspected", "evidence": "ticket:TS-1001"}


@pytest.fixture
def ts(make_key: Callable[..., dict[str, str]]) -> dict[str, str]:
    return make_key("flags:write", "cases:read", "cases:write")


def flag(client: FlaskClient, headers: dict[str, str], account: str = "acct-1", **body: Any) -> Any:
    return client.post(f"/v1/accounts/{account}/flags", json={**FLAG, **body}, headers=headers)


def count(app: Flask, model: type) -> int:
    with app.app_context(), db.new_session() as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


def test_first_flag_opens_a_case_and_later_ones_join_it(
    client: FlaskClient, ts: dict[str, str]
) -> None:
    first = flag(client, ts)
    assert first.status_code == 201
    body = first.get_json()
    assert set(body["flag"]) == {"id", "account_id", "reason", "confidence", "created_at"}
    case = body["case"]
    assert (case["account_id"], case["state"], case["confidence"]) == (
        "acct-1",
        "open",
        "suspected",
    )
    assert [e["event"] for e in case["timeline"]] == ["case.opened"]

    second = flag(client, ts, reason="classifier", confidence="confirmed", evidence="model:v7")
    assert second.status_code == 200
    joined = second.get_json()["case"]
    assert joined["id"] == case["id"]
    assert joined["confidence"] == "confirmed"  # a confirmed flag raises the case
    assert [e["event"] for e in joined["timeline"]] == [
        "case.opened",
        "flag.joined",
        "case.confirmed",
    ]
    assert flag(client, ts, account="acct-2").status_code == 201  # another account, another case


def test_idempotency_key_replays_the_first_answer(
    app: Flask, client: FlaskClient, ts: dict[str, str]
) -> None:
    headers = {**ts, "Idempotency-Key": "req-0001"}
    first = flag(client, headers)
    again = flag(client, headers)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.get_json() == first.get_json()
    assert count(app, Flag) == 1
    other = flag(client, headers, evidence="ticket:TS-9999")
    assert other.status_code == 422
    assert other.get_json(force=True)["code"] == "idempotency_key_reused"
    assert count(app, Flag) == 1


@pytest.mark.parametrize("account", ["acct%0A", "..%2Fetc", "-leading-dash", "a" * 129, "sp%20ace"])
def test_invalid_account_ids_are_refused(
    client: FlaskClient, ts: dict[str, str], account: str
) -> None:
    response = flag(client, ts, account=account)
    assert response.status_code in (404, 422)  # %2F never reaches the view (a path separator)
    if response.status_code == 422:
        assert response.get_json(force=True)["code"] == "invalid_account_id"


def test_bad_flag_bodies_are_422(client: FlaskClient, ts: dict[str, str]) -> None:
    for body in ({"reason": "hunch"}, {"confidence": "maybe"}, {"evidence": "x" * 501}):
        response = flag(client, ts, **body)
        assert response.status_code == 422
        assert response.get_json(force=True)["code"] == "validation_failed"


def test_concurrent_flags_open_exactly_one_case(
    app_factory: Callable[..., Flask], make_key: Callable[..., dict[str, str]]
) -> None:
    app = app_factory()
    headers = make_key("flags:write")
    statuses: list[int] = []
    case_ids: list[str] = []
    barrier = threading.Barrier(12)

    def worker() -> None:
        client = app.test_client()
        barrier.wait()
        response = flag(client, headers, account="acct-race")
        statuses.append(response.status_code)
        case_ids.append(response.get_json()["case"]["id"])

    threads = [threading.Thread(target=worker) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [200] * 11 + [201]
    assert len(set(case_ids)) == 1
    assert count(app, Case) == 1 and count(app, Flag) == 12


def test_list_get_dismiss_and_expedite(client: FlaskClient, ts: dict[str, str]) -> None:
    ids = [flag(client, ts, account=f"acct-{i}").get_json()["case"]["id"] for i in range(5)]
    page = client.get("/v1/cases?limit=2", headers=ts).get_json()
    seen = [c["id"] for c in page["items"]]
    while page["next_cursor"]:
        page = client.get(f"/v1/cases?limit=2&cursor={page['next_cursor']}", headers=ts).get_json()
        seen += [c["id"] for c in page["items"]]
    assert sorted(seen) == sorted(ids) and len(seen) == 5
    only = client.get("/v1/cases?account_id=acct-3", headers=ts).get_json()["items"]
    assert [c["id"] for c in only] == [ids[3]]
    assert client.get("/v1/cases?state=nonsense", headers=ts).status_code == 422
    assert client.get("/v1/cases?cursor=zzz", headers=ts).status_code == 422
    assert (
        client.get("/v1/cases/00000000-0000-4000-8000-000000000000", headers=ts).status_code == 404
    )

    expedited = client.post(f"/v1/cases/{ids[0]}/expedite", json={}, headers=ts).get_json()
    assert expedited["purge_after"] is not None
    assert (
        client.post(f"/v1/cases/{ids[0]}/dismiss", json={}, headers=ts).status_code == 422
    )  # reason required
    dismissed = client.post(
        f"/v1/cases/{ids[0]}/dismiss", json={"reason": "adult verified by ID check"}, headers=ts
    )
    assert dismissed.status_code == 200
    assert dismissed.get_json()["state"] == "dismissed"
    assert [e["event"] for e in dismissed.get_json()["timeline"]][-1] == "case.dismissed"
    again = client.post(f"/v1/cases/{ids[0]}/dismiss", json={"reason": "again"}, headers=ts)
    assert again.status_code == 409 and again.get_json(force=True)["code"] == "case_not_dismissable"
    assert client.post(f"/v1/cases/{ids[0]}/expedite", json={}, headers=ts).status_code == 409
    # The account has no open case now: a new flag opens a new one.
    reopened = flag(client, ts, account="acct-0")
    assert reopened.status_code == 201 and reopened.get_json()["case"]["id"] != ids[0]
    assert (
        client.get("/v1/cases?state=dismissed", headers=ts).get_json()["items"][0]["id"] == ids[0]
    )


def test_a_denied_account_at_signup_opens_a_case(
    app: Flask, client: FlaskClient, make_key: Callable[..., dict[str, str]], ts: dict[str, str]
) -> None:
    from tests.functional.test_age_checks import seed_table

    seed_table(app)
    client.post(
        "/v1/age-checks",
        json={"age": 10, "account_id": "acct-kid"},
        headers=make_key("age-checks:write"),
    )
    cases = client.get("/v1/cases?account_id=acct-kid", headers=ts).get_json()["items"]
    assert len(cases) == 1 and cases[0]["state"] == "open"
    with app.app_context(), db.new_session() as s:
        assert s.scalars(select(Flag.reason)).all() == ["self_declared_underage"]
        assert audit.verify(s).ok
