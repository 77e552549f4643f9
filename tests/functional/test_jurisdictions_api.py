"""The jurisdiction endpoints as legal and the other clients use them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from agegate.audit.models import AuditEvent
from agegate.extensions import db

RULE = {
    "minimum_age": 16,
    "effective_from": "2018-05-25",
    "status": "in_force",
    "citation": "GDPR Art. 8(1); Test Act s. 1",
    "notes": "",
    "source_url": "https://law.example/test-act",
    "change_reason": "initial rule",
}


@pytest.fixture
def legal(make_key: Callable[..., dict[str, str]]) -> dict[str, str]:
    return make_key("jurisdictions:read", "jurisdictions:write")


def put(client: FlaskClient, headers: dict[str, str], code: str, **changes: Any) -> Any:
    return client.put(f"/v1/jurisdictions/{code}", json={**RULE, **changes}, headers=headers)


@pytest.fixture
def seeded(client: FlaskClient, legal: dict[str, str]) -> None:
    for code, age in (("default", 13), ("DE", 16), ("CA", 13), ("CA-QC", 14), ("US", 13)):
        assert put(client, legal, code, minimum_age=age).status_code == 200


def test_put_adds_versions_and_never_overwrites(client: FlaskClient, legal: dict[str, str]) -> None:
    first = put(client, legal, "de")
    assert first.status_code == 200
    body = first.get_json()
    assert body["code"] == "DE" and body["version"] == 1
    assert body["effective_from"] == "2018-05-25T00:00:00+14:00"
    assert body["changed_by"].startswith("key:") and body["change_reason"] == "initial rule"

    second = put(
        client, legal, "DE", minimum_age=15, citation="Corrected citation", change_reason="typo"
    )
    assert second.get_json()["version"] == 2
    history = client.get("/v1/jurisdictions/DE/history", headers=legal).get_json()
    assert [(v["version"], v["minimum_age"]) for v in history["items"]] == [(1, 16), (2, 15)]
    current = client.get("/v1/jurisdictions/de", headers=legal).get_json()
    assert current["name"] == "Germany"
    assert current["current"]["version"] == 2 and current["scheduled"] == []


def test_changes_are_audit_events_with_before_after_and_why(
    app: Flask, client: FlaskClient, legal: dict[str, str]
) -> None:
    put(client, legal, "AT", minimum_age=14)
    put(client, legal, "AT", minimum_age=15, change_reason="law amended")
    with app.app_context(), db.new_session() as s:
        events = s.scalars(
            select(AuditEvent).where(AuditEvent.subject_id == "AT").order_by(AuditEvent.seq)
        ).all()
    assert [e.event for e in events] == ["jurisdiction.version_added"] * 2
    last = events[-1]
    assert last.actor.startswith("key:")
    assert last.data["reason"] == "law amended"
    assert last.data["before"]["minimum_age"] == 14 and last.data["after"]["minimum_age"] == 15


def test_scheduled_rules_are_listed_and_take_over(
    client: FlaskClient, legal: dict[str, str], seeded: None
) -> None:
    put(
        client,
        legal,
        "DE",
        minimum_age=18,
        effective_from="2999-01-01T00:00:00Z",
        change_reason="future law",
    )
    body = client.get("/v1/jurisdictions/DE", headers=legal).get_json()
    assert body["current"]["minimum_age"] == 16
    assert [(r["minimum_age"], r["effective_from"]) for r in body["scheduled"]] == [
        (18, "2999-01-01T00:00:00Z")
    ]
    later = client.get(
        "/v1/jurisdictions/resolve?country=DE&on=2999-01-01T00:00:00Z", headers=legal
    ).get_json()
    assert later["rule"]["minimum_age"] == 18


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"minimum_age": 12}, "minimum_age"),
        ({"minimum_age": 26}, "minimum_age"),
        ({"minimum_age": "16"}, "minimum_age"),
        ({"minimum_age": 16.5}, "minimum_age"),
        ({"effective_from": "2018-05-25T00:00:00"}, "effective_from"),
        ({"effective_from": "25/05/2018"}, "effective_from"),
        ({"effective_from": "2018-02-30"}, "effective_from"),
        ({"status": "repealed"}, "status"),
        ({"citation": "  "}, "citation"),
        ({"citation": None}, "citation"),
        ({"source_url": "not a url"}, "source_url"),
        ({"change_reason": ""}, "change_reason"),
    ],
)
def test_bad_rules_are_422_per_field(
    client: FlaskClient, legal: dict[str, str], changes: dict[str, Any], field: str
) -> None:
    response = put(client, legal, "DE", **changes)
    assert response.status_code == 422
    body = response.get_json(force=True)
    assert body["code"] == "validation_failed"
    assert list(body["errors"]) == [field]
    assert client.get("/v1/jurisdictions/DE/history", headers=legal).status_code == 404


@pytest.mark.parametrize(
    ("code", "hint"),
    [
        ("UK", "did you mean GB?"),
        ("GBR", "did you mean GB?"),
        ("ZZ", "not an ISO 3166-1"),
        ("US-ZZ", "not an ISO 3166-2 subdivision of US"),
    ],
)
def test_unknown_codes_are_422_with_help(
    client: FlaskClient, legal: dict[str, str], code: str, hint: str
) -> None:
    response = put(client, legal, code)
    assert response.status_code == 422
    body = response.get_json(force=True)
    assert body["code"] == "unknown_code"
    assert hint in body["errors"]["code"][0]


def test_default_must_stay_in_force_and_cannot_be_retired(
    client: FlaskClient, legal: dict[str, str], seeded: None
) -> None:
    proposed = put(client, legal, "default", status="proposed")
    assert (
        proposed.status_code == 422
        and proposed.get_json(force=True)["code"] == "default_must_be_in_force"
    )
    retire = client.delete("/v1/jurisdictions/default?change_reason=test", headers=legal)
    assert (
        retire.status_code == 422 and retire.get_json(force=True)["code"] == "default_not_retirable"
    )


def test_delete_retires_a_code_which_then_falls_back(
    client: FlaskClient, legal: dict[str, str], seeded: None
) -> None:
    assert (
        client.delete("/v1/jurisdictions/DE", headers=legal).status_code == 422
    )  # change_reason required
    retired = client.delete("/v1/jurisdictions/de?change_reason=law+repealed", headers=legal)
    assert retired.status_code == 200 and retired.get_json()["retired"] is True
    body = client.get("/v1/jurisdictions/DE", headers=legal).get_json()
    assert body["current"] is None and body["scheduled"] == []
    resolution = client.get("/v1/jurisdictions/resolve?country=DE", headers=legal).get_json()
    assert resolution["matched"] == "default"
    assert [s["outcome"] for s in resolution["steps"]] == ["retired", "applied"]
    assert len(client.get("/v1/jurisdictions/DE/history", headers=legal).get_json()["items"]) == 2
    assert (
        client.delete("/v1/jurisdictions/DE?change_reason=again", headers=legal).status_code == 404
    )
    assert client.delete("/v1/jurisdictions/FR?change_reason=x", headers=legal).status_code == 404


def test_resolve_explains_and_validates(
    client: FlaskClient, legal: dict[str, str], seeded: None
) -> None:
    quebec = client.get(
        "/v1/jurisdictions/resolve?country=ca&subdivision=ca-qc", headers=legal
    ).get_json()
    assert quebec["matched"] == "subdivision" and quebec["rule"]["code"] == "CA-QC"
    assert quebec["rule"]["minimum_age"] == 14
    ontario = client.get(
        "/v1/jurisdictions/resolve?country=CA&subdivision=CA-ON", headers=legal
    ).get_json()
    assert ontario["matched"] == "country"
    assert [(s["code"], s["outcome"]) for s in ontario["steps"]] == [
        ("CA-ON", "no_rule"),
        ("CA", "applied"),
    ]
    nowhere = client.get("/v1/jurisdictions/resolve", headers=legal).get_json()
    assert nowhere["matched"] == "default" and nowhere["rule"]["minimum_age"] == 13

    mismatch = client.get("/v1/jurisdictions/resolve?country=US&subdivision=CA-QC", headers=legal)
    assert mismatch.status_code == 422
    assert mismatch.get_json(force=True)["code"] == "subdivision_country_mismatch"
    for query in ("country=UK", "country=CA-QC", "subdivision=QC", "on=yesterday"):
        response = client.get(f"/v1/jurisdictions/resolve?{query}", headers=legal)
        assert response.status_code == 422, query


def test_list_in_force_with_pagination_and_on(
    client: FlaskClient, legal: dict[str, str], seeded: None
) -> None:
    put(client, legal, "FR", minimum_age=15, effective_from="2030-01-01", change_reason="future")
    seen, cursor = [], None
    while True:
        page = client.get(
            "/v1/jurisdictions?limit=2" + (f"&cursor={cursor}" if cursor else ""), headers=legal
        ).get_json()
        seen += [r["code"] for r in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["default", "CA", "CA-QC", "DE", "US"]
    future = client.get("/v1/jurisdictions?on=2030-06-01", headers=legal).get_json()
    assert "FR" in [r["code"] for r in future["items"]]
    past = client.get("/v1/jurisdictions?on=2000-01-01", headers=legal).get_json()
    assert past["items"] == [] and past["next_cursor"] is None
    assert client.get("/v1/jurisdictions?cursor=garbage!", headers=legal).status_code == 422
    assert client.get("/v1/jurisdictions?limit=201", headers=legal).status_code == 422


def test_a_codes_history_is_a_list_like_every_other(
    client: FlaskClient, legal: dict[str, str]
) -> None:
    for age in range(14, 19):  # five versions
        assert put(client, legal, "FR", minimum_age=age).status_code == 200
    seen, cursor, pages = [], None, 0
    while True:
        query = f"?limit=2&cursor={cursor}" if cursor else "?limit=2"
        page = client.get(f"/v1/jurisdictions/fr/history{query}", headers=legal).get_json()
        assert page["code"] == "FR" and len(page["items"]) <= 2
        seen += [(v["version"], v["minimum_age"]) for v in page["items"]]
        pages, cursor = pages + 1, page["next_cursor"]
        if cursor is None:
            break
    assert seen == [(1, 14), (2, 15), (3, 16), (4, 17), (5, 18)] and pages == 3
    whole = client.get("/v1/jurisdictions/FR/history", headers=legal).get_json()
    assert len(whole["items"]) == 5 and whole["next_cursor"] is None  # default limit 50
    for bad in ("?cursor=not-a-cursor", "?limit=0", "?limit=201", "?cursor=eyJhZnRlciI6ICJGUiJ9"):
        answer = client.get(f"/v1/jurisdictions/FR/history{bad}", headers=legal)
        assert answer.status_code == 422, bad
        assert answer.get_json()["code"] == "validation_failed"
    assert client.get("/v1/jurisdictions/PT/history?limit=1", headers=legal).status_code == 404
