"""A birth date never reaches the database, a log line, a Redis key or value, or a response."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date
from urllib.parse import quote

import pytest
import redis
from flask import Flask
from sqlalchemy import inspect, text

from agegate.extensions import db
from tests.functional.test_age_checks import seed_table

# Distinctive dates: none of them is today, a rule date or anything else the service writes.
FULL_DATES = [date(1987, 11, 3), date(2016, 8, 19), date(2011, 12, 27)]
PARTIAL = "2014-09"
INVALID = ["2013-02-29", "2031-05-06", "1899-10-17"]


def spellings(day: date) -> set[str]:
    """The common ways of writing a date (ISO, compact, European, US, with any separator)."""
    d, m, y = f"{day.day:02d}", f"{day.month:02d}", f"{day.year}"
    forms = {f"{y}-{m}-{d}", f"{y}{m}{d}", f"{d}{m}{y}", f"{m}{d}{y}"}
    for sep in "./-":
        forms |= {f"{d}{sep}{m}{sep}{y}", f"{m}{sep}{d}{sep}{y}", f"{y}{sep}{m}{sep}{d}"}
    forms |= {
        f"{day.day}/{day.month}/{y}",
        f"{day.month}/{day.day}/{y}",
        day.strftime("%d %B %Y"),
        day.strftime("%B %d, %Y"),
    }
    return forms


def needles() -> set[str]:
    found = set().union(*(spellings(d) for d in FULL_DATES))
    found |= {PARTIAL, "201409", "09/2014", "09.2014"}
    for raw in INVALID:
        y, m, d = raw.split("-")
        found |= {raw, f"{y}{m}{d}", f"{d}.{m}.{y}", f"{m}/{d}/{y}", f"{d}/{m}/{y}"}
    return found


def test_no_birth_date_is_kept_anywhere(
    app: Flask,
    make_key: Callable[..., dict[str, str]],
    caplog: pytest.LogCaptureFixture,
    redis_url: str | None,
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, SQLAlchemy's statements and parameters included
    seed_table(app)
    headers = make_key("age-checks:write")
    client = app.test_client()
    seen: list[str] = []
    bodies = [
        {
            "date_of_birth": d.isoformat(),
            "country": "DE",
            "session_id": f"s{i}",
            "account_id": f"acct-{i}",
        }
        for i, d in enumerate(FULL_DATES)
    ]
    bodies.append(
        {"date_of_birth": PARTIAL, "country": "CA", "subdivision": "CA-QC", "session_id": "partial"}
    )
    bodies += [{"date_of_birth": raw, "session_id": f"bad-{raw}"} for raw in INVALID]
    bodies.append({"date_of_birth": FULL_DATES[0].isoformat(), "age": 30})  # both: 422
    for body in bodies:
        response = client.post("/v1/age-checks", json=body, headers=headers)
        assert response.status_code in (200, 422)
        seen.append(response.get_data(as_text=True))
        seen.append(str(dict(response.headers)))
    # Malformed JSON around a date, too.
    response = client.post(
        "/v1/age-checks",
        data='{"date_of_birth": "1987-11-03",',
        headers={**headers, "Content-Type": "application/json"},
    )
    seen.append(response.get_data(as_text=True))

    app.extensions["agegate.check_recorder"].flush()
    with app.app_context(), db.engine.connect() as conn:
        for table in inspect(conn).get_table_names():
            rows = conn.execute(text(f'SELECT * FROM "{table}"')).all()
            seen.append(f"{table}: {rows!r}")
    if redis_url:
        client_redis = redis.Redis.from_url(redis_url, decode_responses=True)
        for key in client_redis.scan_iter("*"):
            seen.append(key)
            if client_redis.type(key) == "string":
                seen.append(client_redis.get(key) or "")
        client_redis.close()
    seen.append(caplog.text)
    assert any("age_checks" in chunk for chunk in seen)  # the search did cover the tables

    haystack = "\n".join(seen)
    leaked = sorted(n for n in needles() if n in haystack)
    assert leaked == []


# Six ways a person types a birth date, each into every place a client could put it wrongly.
TYPED = ["1987-11-03", "03.11.1987", "11/03/1987", "19871103", "3 November 1987", "Nov 3, 1987"]


def misplaced(typed: str) -> list[tuple[str, str, dict[str, object]]]:
    """(method, path, JSON body) requests that carry `typed` where it does not belong."""
    rule = {"minimum_age": 16, "effective_from": "2020-01-01", "status": "in_force"}
    return [
        ("POST", "/v1/age-checks", {"age": 30, "country": typed}),
        ("POST", "/v1/age-checks", {"age": 30, "country": "CA", "subdivision": typed}),
        ("POST", "/v1/age-checks", {"age": 30, "subdivision": typed}),
        ("POST", "/v1/age-checks", {"age": 30, typed: "x"}),
        ("POST", "/v1/age-checks", {"age": typed}),
        ("POST", "/v1/age-checks", {"date_of_birth": typed}),
        ("POST", "/v1/age-checks", {"age": 30, "account_id": f"{typed}/x"}),
        ("POST", "/v1/age-checks", {"age": 30, "session_id": typed * 30}),
        ("PUT", "/v1/jurisdictions/DE", {**rule, "citation": "x", "change_reason": "x", typed: 1}),
        ("PUT", f"/v1/jurisdictions/{quote(typed, safe='')}", {**rule, "citation": "x"}),
        ("GET", f"/v1/jurisdictions/{quote(typed, safe='')}", {}),
        ("GET", f"/v1/jurisdictions/resolve?country={quote(typed)}", {}),
        ("GET", f"/v1/jurisdictions/resolve?country=CA&subdivision={quote(typed)}", {}),
        ("GET", f"/v1/jurisdictions?{quote(typed)}=1", {}),
        ("POST", "/v1/accounts/acct-1/flags", {"reason": "other", "confidence": typed}),
        ("POST", "/v1/accounts/acct-1/flags", {"reason": "other", typed: "x"}),
        ("POST", "/v1/accounts/acct-1/legal-holds", {"reason": "r", "targets": [typed]}),
        ("POST", "/v1/jurisdictions/import?change_reason=x", {"rules": [{**rule, "code": typed}]}),
    ]


def test_no_birth_date_comes_back_in_an_error_body(
    app: Flask, make_key: Callable[..., dict[str, str]]
) -> None:
    from agegate.api_keys.models import Scope

    seed_table(app)
    headers = make_key(*(s.value for s in Scope))
    client = app.test_client()
    errors = 0
    for typed in TYPED:
        day = date(1987, 11, 3)
        forbidden = spellings(day) | {typed, typed.upper(), quote(typed), quote(typed, safe="")}
        for method, path, body in misplaced(typed):
            response = client.open(
                path, method=method, json=body if method != "GET" else None, headers=headers
            )
            text = response.get_data(as_text=True)
            if response.status_code >= 400:
                errors += 1
            leaked = sorted(f for f in forbidden if f in text or f.lower() in text.lower())
            assert leaked == [], (method, path, body, response.status_code, text)
    assert errors >= len(TYPED) * 15  # the requests did reach the error paths
