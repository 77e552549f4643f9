"""POST /v1/age-checks: boundaries, bad input, lockouts, flags and rate limits."""

from __future__ import annotations

import hmac
import io
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, text

from agegate.age_checks.lockouts import denials_since, last_denial
from agegate.age_checks.models import AgeCheck
from agegate.api_keys import service as api_keys_service
from agegate.audit.models import AuditEvent
from agegate.db import make_engine, utcnow
from agegate.extensions import db
from agegate.flags.models import Flag
from agegate.jurisdictions import service as jurisdictions
from agegate.jurisdictions.models import RuleStatus
from agegate.jurisdictions.schemas import parse_instant
from tests.conftest import TEST_SECRET

# 2026-03-02 at 11:00 UTC: still 1 March at UTC-12.
NOW = datetime(2026, 3, 2, 11, 0, tzinfo=UTC)
TABLE = [("default", 13), ("DE", 16), ("CA", 13), ("CA-QC", 14), ("US", 13)]


def seed_table(app: Flask) -> None:
    with app.app_context(), db.new_session() as s:
        for code, age in TABLE:
            rule = jurisdictions.RuleInput(
                code, age, parse_instant("2000-01-01"), RuleStatus.IN_FORCE, f"Test Act ({code})"
            )
            jurisdictions.add_version(s, rule, actor="test", reason="fixture", now=utcnow())
        s.commit()


@pytest.fixture
def signup(
    app: Flask, make_key: Callable[..., dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Any]]:
    seed_table(app)
    monkeypatch.setattr("agegate.age_checks.views.utcnow", lambda: NOW)
    monkeypatch.setattr("agegate.age_checks.lockouts.utcnow", lambda: NOW)
    client, headers = app.test_client(), make_key("age-checks:write")

    def post(**body: Any) -> Any:
        return client.post("/v1/age-checks", json=body, headers=headers)

    yield post


def outcome(response: Any) -> tuple[str, str]:
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    return body["outcome"], body["reason"]


@pytest.mark.parametrize(
    ("birth", "country", "subdivision", "expected"),
    [
        ("2010-03-01", "DE", None, "allowed"),  # 16 today (1 March at UTC-12)
        ("2010-03-02", "DE", None, "denied"),  # 16 tomorrow everywhere
        ("2013-03-01", None, None, "allowed"),  # default 13
        ("2013-03-02", None, None, "denied"),
        ("2012-03-01", "CA", "CA-QC", "allowed"),  # Quebec 14
        ("2012-03-02", "CA", "CA-QC", "denied"),
        ("2012-03-02", "CA", "CA-ON", "allowed"),  # Ontario: Canada's 13
        ("2010-03", "DE", None, "denied"),  # youngest in March 2010: 31 March
        ("2010-02", "DE", None, "allowed"),
        ("2010", "DE", None, "denied"),  # youngest in 2010: 31 December
        ("2009", "DE", None, "allowed"),
    ],
)
def test_age_is_judged_to_the_day(
    signup: Callable[..., Any],
    birth: str,
    country: str | None,
    subdivision: str | None,
    expected: str,
) -> None:
    body: dict[str, Any] = {"date_of_birth": birth}
    if country:
        body["country"] = country
    if subdivision:
        body["subdivision"] = subdivision
    response = signup(**body)
    assert outcome(response)[0] == expected
    assert response.get_json()["jurisdiction"]["code"] == (
        subdivision if subdivision == "CA-QC" else country or "default"
    )


def test_leap_day_birthday_is_reached_on_1_march(signup: Callable[..., Any]) -> None:
    # Born 29 Feb 2012: 14 on 1 March 2026 (a common year), which is today at UTC-12.
    assert (
        outcome(signup(date_of_birth="2012-02-29", country="CA", subdivision="CA-QC"))[0]
        == "allowed"
    )


def test_response_shape(signup: Callable[..., Any]) -> None:
    body = signup(date_of_birth="1990-05-17", country="de").get_json()
    assert set(body) == {"id", "outcome", "reason", "minimum_age", "jurisdiction", "checked_at"}
    assert body["minimum_age"] == 16 and body["reason"] == "meets_minimum_age"
    assert body["jurisdiction"] == {
        "code": "DE",
        "rule_version": 1,
        "citation": "Test Act (DE)",
        "matched": "country",
    }


def test_age_instead_of_a_date(signup: Callable[..., Any]) -> None:
    assert outcome(signup(age=16, country="DE")) == ("allowed", "meets_minimum_age")
    assert outcome(signup(age=15, country="DE")) == ("denied", "below_minimum_age")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"date_of_birth": "2027-01-01"}, "date_of_birth_in_future"),
        (
            {"date_of_birth": "2026-03-02"},
            "date_of_birth_in_future",
        ),  # today in UTC, tomorrow at UTC-12
        ({"date_of_birth": "1899-06-01"}, "date_of_birth_before_1900"),
        ({"date_of_birth": "2013-02-29"}, "date_of_birth_impossible"),
        ({"date_of_birth": "2013-02-01T00:00:00Z"}, "date_of_birth_is_timestamp"),
        ({"date_of_birth": "01/02/2013"}, "date_of_birth_malformed"),
        ({"date_of_birth": 20130201}, "validation_failed"),
        ({"date_of_birth": None}, "validation_failed"),
        ({"age": "14"}, "validation_failed"),
        ({"age": 14.5}, "validation_failed"),
        ({"age": -1}, "age_out_of_range"),
        ({"age": 131}, "age_out_of_range"),
        ({"date_of_birth": "2000-01-01", "age": 26}, "both_date_of_birth_and_age"),
        ({}, "date_of_birth_or_age_required"),
        ({"country": "DE"}, "date_of_birth_or_age_required"),
        ({"age": 20, "country": "UK"}, "unknown_code"),
        ({"age": 20, "country": 49}, "validation_failed"),
        ({"age": 20, "country": "US", "subdivision": "CA-QC"}, "subdivision_country_mismatch"),
        ({"age": 20, "session_id": ""}, "invalid_session_id"),
        ({"age": 20, "account_id": "acct\n"}, "invalid_account_id"),
        ({"age": 20, "account_id": "../../etc"}, "invalid_account_id"),
        ({"age": 20, "birthday": "2000-01-01"}, "validation_failed"),
        ({"age": 20, "country": "D" * 100_000}, "validation_failed"),
        ({"age": 20, "country": "CA", "subdivision": "Q" * 100_000}, "validation_failed"),
        ({"age": 20, "session_id": "", "birthday": "x"}, "validation_failed"),
        ({"age": 20, "session_id": "", "country": 49}, "validation_failed"),
    ],
)
def test_bad_input_is_422_with_a_stable_code(
    signup: Callable[..., Any], body: dict[str, Any], code: str
) -> None:
    response = signup(**body)
    assert response.status_code == 422
    problem = response.get_json(force=True)
    assert problem["code"] == code
    assert problem["errors"]
    text = response.get_data(as_text=True)
    if isinstance(body.get("date_of_birth"), str):
        assert body["date_of_birth"] not in text


def test_malformed_json_is_400(
    app: Flask, signup: Callable[..., Any], make_key: Callable[..., dict[str, str]]
) -> None:
    response = app.test_client().post(
        "/v1/age-checks",
        data='{"date_of_birth": "2013-',
        headers={**make_key("age-checks:write"), "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert "2013" not in response.get_data(as_text=True)


def test_a_body_over_the_size_limit_is_413_and_one_without_a_length_is_read(
    app: Flask, make_key: Callable[..., dict[str, str]]
) -> None:
    seed_table(app)
    client = app.test_client()
    headers = {**make_key("age-checks:write"), "Content-Type": "application/json"}
    too_large = b" " * app.config["MAX_CONTENT_LENGTH"] + b'{"age": 30}'
    answer = client.post("/v1/age-checks", data=too_large, headers=headers)
    assert (answer.status_code, answer.get_json()["code"]) == (413, "payload_too_large")
    # Sent chunked, as a server hands it on: no Content-Length, the input ends by itself.
    answer = client.post(
        "/v1/age-checks",
        input_stream=io.BytesIO(b'{"age": 30, "country": "DE"}'),
        headers=headers,
        environ_overrides={"wsgi.input_terminated": True, "HTTP_TRANSFER_ENCODING": "chunked"},
    )
    assert outcome(answer) == ("allowed", "meets_minimum_age")


def test_a_denied_session_stays_denied_whatever_it_declares_next(
    signup: Callable[..., Any],
) -> None:
    assert outcome(signup(date_of_birth="2014-01-01", country="DE", session_id="sess-a")) == (
        "denied",
        "below_minimum_age",
    )
    retry = signup(date_of_birth="1980-01-01", country="US", session_id="sess-a")
    assert outcome(retry) == ("denied", "prior_underage_declaration")
    assert outcome(signup(age=40, session_id="sess-a")) == ("denied", "prior_underage_declaration")
    # Another session is judged afresh.
    assert outcome(signup(date_of_birth="1980-01-01", session_id="sess-b"))[0] == "allowed"


def recorded_denials(app: Flask) -> list[str]:
    with app.app_context(), db.new_session() as s:
        return [r.value for r in s.scalars(select(AgeCheck.reason).order_by(AgeCheck.reason))]


def test_a_denial_is_recorded_before_its_answer(app: Flask, signup: Callable[..., Any]) -> None:
    """A process that starts the moment the child has its answer finds the denial in the
    database: nothing waits for a batch."""
    assert outcome(signup(age=9, session_id="answered"))[0] == "denied"
    assert recorded_denials(app) == ["below_minimum_age"]
    assert app.extensions["agegate.check_recorder"].flush() == 0  # nothing was left queued


def test_while_the_database_refuses_a_denial_its_lockout_waits_in_the_store(
    app: Flask,
    app_factory: Callable[..., Flask],
    signup: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The record waits in the queue; the lockout is in the store meanwhile, where a process
    that starts before the record is written finds it. Then the record goes by itself."""
    recorder = app.extensions["agegate.check_recorder"]
    url = app.extensions["agegate.engine"].url
    if url.get_backend_name() == "sqlite":
        down = make_engine("sqlite:////nonexistent-dir.invalid/agegate.db", 1)
    else:
        down = make_engine(url.set(port=9).render_as_string(hide_password=False), 1)
    monkeypatch.setattr(recorder, "_engine", down)
    assert outcome(signup(age=9, session_id="refused")) == ("denied", "below_minimum_age")
    assert outcome(signup(age=40, session_id="refused")) == (
        "denied",
        "prior_underage_declaration",
    )
    assert recorder.flush() == 0  # refused: the rows wait
    assert recorded_denials(app) == []
    fresh = fresh_client(app_factory, "signup-fresh")
    assert outcome(fresh.post("/v1/age-checks", json={"age": 40, "session_id": "refused"})) == (
        "denied",
        "prior_underage_declaration",
    )
    assert recorded_denials(app) == ["prior_underage_declaration"]  # the fresh process's own
    monkeypatch.setattr(recorder, "_engine", app.extensions["agegate.engine"])
    expected = ["below_minimum_age", "prior_underage_declaration", "prior_underage_declaration"]
    deadline = time.monotonic() + 5
    while (found := recorded_denials(app)) != expected:
        assert time.monotonic() < deadline, f"the records are {found}"
        time.sleep(0.05)


def fresh_client(app_factory: Callable[..., Flask], key_name: str, **settings: Any) -> FlaskClient:
    """Another process of the deployment, started now, with a key of its own."""
    other = app_factory(**settings)
    from agegate.api_keys import service as keys

    with other.app_context(), db.new_session() as s:
        _, key = keys.create_key(s, name=key_name, scopes=["age-checks:write"], actor="test")
        s.commit()
    client = other.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    return client


def test_a_denied_account_is_locked_out_and_flagged(app: Flask, signup: Callable[..., Any]) -> None:
    assert outcome(signup(age=12, account_id="acct-123"))[0] == "denied"
    assert outcome(signup(age=30, account_id="acct-123", session_id="new-device")) == (
        "denied",
        "prior_underage_declaration",
    )
    with app.app_context(), db.new_session() as s:
        flags = s.scalars(select(Flag).where(Flag.account_id == "acct-123")).all()
        events = s.scalars(
            select(AuditEvent.event).where(AuditEvent.subject_id == "acct-123")
        ).all()
    assert [(f.reason.value, f.confidence.value) for f in flags] == [
        ("self_declared_underage", "suspected")
    ] * 2
    assert events == ["flag.created", "flag.created"]
    assert all(f.evidence and f.evidence.startswith("age-check:") for f in flags)


def test_the_lockout_window_expires(
    app_factory: Callable[..., Flask], make_key: Callable[..., dict[str, str]]
) -> None:
    app = app_factory(lockout_window_seconds=1)
    seed_table(app)
    client = app.test_client()
    from agegate.api_keys import service as keys

    with app.app_context(), db.new_session() as s:
        _, key = keys.create_key(s, name="signup", scopes=["age-checks:write"], actor="test")
        s.commit()
    headers = {"Authorization": f"Bearer {key}"}
    client.post("/v1/age-checks", json={"age": 10, "session_id": "s"}, headers=headers)
    assert (
        client.post(
            "/v1/age-checks", json={"age": 30, "session_id": "s"}, headers=headers
        ).get_json()["reason"]
        == "prior_underage_declaration"
    )
    time.sleep(1.3)
    assert (
        client.post(
            "/v1/age-checks", json={"age": 30, "session_id": "s"}, headers=headers
        ).get_json()["outcome"]
        == "allowed"
    )


def test_the_lockout_survives_a_redis_flush_and_an_outage(
    app_factory: Callable[..., Flask], signup: Callable[..., Any], redis_url: str | None
) -> None:
    assert outcome(signup(age=11, session_id="flushed", account_id="acct-f"))[0] == "denied"
    assert outcome(signup(age=11, session_id="flushed-alone"))[0] == "denied"
    if redis_url:
        client = redis.Redis.from_url(redis_url)
        client.flushdb()
        client.close()
    assert outcome(signup(age=40, session_id="flushed")) == ("denied", "prior_underage_declaration")

    # New processes know nothing but the database (and, here, a Redis that forgot all).
    for client in (
        fresh_client(app_factory, "signup-flushed"),
        fresh_client(app_factory, "signup-no-redis", redis_url="redis://127.0.0.1:9/0"),
    ):
        for body in (
            {"age": 40, "session_id": "flushed"},
            {"age": 40, "account_id": "acct-f"},
            {"age": 40, "session_id": "flushed-alone"},
        ):
            assert outcome(client.post("/v1/age-checks", json=body)) == (
                "denied",
                "prior_underage_declaration",
            )


def wait_until_complete(app: Flask) -> None:
    lockouts = app.extensions["agegate.lockouts"]
    deadline = time.monotonic() + 5
    while not lockouts.complete:
        assert time.monotonic() < deadline, "the process never knew every lockout"
        time.sleep(0.01)


def test_a_denial_binds_a_running_process_before_its_answer_leaves(
    app_factory: Callable[..., Flask],
    signup: Callable[..., Any],
    redis_url: str | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The other process is asked once, right after the denial's answer: no waiting.

    With Redis it knows every lockout from memory and messages, and its database poll is
    pushed an hour away, so that only the message can bring the denial. Without a store that
    pushes (the embedded default), it asks the database on every check."""
    monkeypatch.setattr("agegate.age_checks.lockouts.POLL_SECONDS", 3600.0)
    client = fresh_client(app_factory, "signup-other")

    def check_hop() -> tuple[str, str]:
        return outcome(client.post("/v1/age-checks", json={"age": 30, "session_id": "hop"}))

    other = client.application
    if redis_url:
        wait_until_complete(other)
        other_store = other.extensions["agegate.store"]
        other_store.publish("lockouts", "s:not-a-lockout not-a-time")  # not ours: skipped
        other_store.publish("lockouts", "garbage")
    else:
        assert not other.extensions["agegate.lockouts"].complete
    assert check_hop()[0] == "allowed"
    assert outcome(signup(age=9, session_id="hop"))[0] == "denied"
    assert check_hop() == ("denied", "prior_underage_declaration")


def test_a_process_whose_redis_is_gone_asks_the_database_on_every_check(
    app_factory: Callable[..., Flask], signup: Callable[..., Any]
) -> None:
    """It hears no message and never knows every lockout, so each check looks its session up."""
    client = fresh_client(app_factory, "signup-deaf", redis_url="redis://127.0.0.1:9/0")
    assert not client.application.extensions["agegate.lockouts"].complete
    body = {"age": 30, "session_id": "deaf"}
    assert outcome(client.post("/v1/age-checks", json=body))[0] == "allowed"
    assert outcome(signup(age=9, session_id="deaf"))[0] == "denied"
    assert outcome(client.post("/v1/age-checks", json=body)) == (
        "denied",
        "prior_underage_declaration",
    )


def test_the_lockout_poll_reads_the_partial_index_of_denials(app: Flask) -> None:
    """Even in the generic plan of a prepared statement (psycopg prepares a query after five
    runs), which PostgreSQL can only match to a partial index if the predicate is literal."""
    engine = app.extensions["agegate.engine"]
    since = datetime(2026, 1, 1, tzinfo=UTC)
    sql = str(denials_since(since).compile(dialect=engine.dialect))
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SET plan_cache_mode = force_generic_plan"))
            conn.execute(text("SET enable_seqscan = off"))
            conn.exec_driver_sql("PREPARE poll(timestamptz) AS " + re.sub(r"%\(\w+\)s", "$1", sql))
            plan = conn.exec_driver_sql("EXPLAIN EXECUTE poll('2026-01-01')").scalars().all()
        else:
            plan = [
                str(row[-1])
                for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, ("2026-01-01",))
            ]
    assert any("ix_age_checks_denied_checked_at" in line for line in plan), plan


def test_a_check_that_cannot_verify_the_lockout_fails_closed(
    app: Flask, app_factory: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process without a subscription whose database does not answer either: a 503 with
    Retry-After for a check that names a session, never an allow; a check without one is
    answered (it has no lockout to verify)."""
    seed_table(app)
    client = fresh_client(app_factory, "signup-blind", redis_url="redis://127.0.0.1:9/0")
    lockouts = client.application.extensions["agegate.lockouts"]
    url = client.application.extensions["agegate.engine"].url
    if url.get_backend_name() == "sqlite":
        down = make_engine("sqlite:////nonexistent-dir.invalid/agegate.db", 1)
    else:
        down = make_engine(url.set(port=9).render_as_string(hide_password=False), 1)
    monkeypatch.setattr(lockouts, "_engine", down)
    blind = client.post("/v1/age-checks", json={"age": 30, "session_id": "unknowable"})
    assert blind.status_code == 503
    assert blind.get_json()["code"] == "dependency_unavailable" and blind.headers["Retry-After"]
    anonymous = client.post("/v1/age-checks", json={"age": 30})
    assert outcome(anonymous) == ("allowed", "meets_minimum_age")


@pytest.mark.parametrize(
    ("session_hash", "account_id", "index"),
    [
        ("ab" * 32, None, "ix_age_checks_denied_session_hash"),
        (None, "acct-1", "ix_age_checks_account_checked_at"),
    ],
)
def test_a_check_that_asks_the_database_reads_an_index(
    app: Flask, session_hash: str | None, account_id: str | None, index: str
) -> None:
    """Until a process knows every lockout, each check asks for its session's and account's
    denials: an index lookup, never a pass over the window's denials."""
    engine = app.extensions["agegate.engine"]
    query = last_denial(session_hash, account_id, datetime(2026, 1, 1, tzinfo=UTC))
    sql = str(query.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SET enable_seqscan = off"))
            plan = conn.exec_driver_sql("EXPLAIN " + sql).scalars().all()
        else:
            plan = [str(row[-1]) for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql)]
    assert any(index in line for line in plan), plan


def test_what_is_stored_per_check(app: Flask, signup: Callable[..., Any]) -> None:
    signup(
        date_of_birth="1995-07-04",
        country="CA",
        subdivision="CA-QC",
        session_id="opaque-session",
        account_id="acct-9",
    )
    # Allowed checks are written in batches; flush() returns once all queued rows are written.
    app.extensions["agegate.check_recorder"].flush()
    with app.app_context(), db.new_session() as s:
        row = s.scalars(select(AgeCheck)).one()
    assert row.age_capped == 21  # 30 years old, recorded as at most 21
    # HMAC-SHA256 under AGEGATE_SECRET_KEY, as documented: lockouts recorded before a release
    # must still match after it.
    keyed = hmac.new(TEST_SECRET.encode(), b"session:opaque-session", "sha256").hexdigest()
    assert row.session_hash == keyed
    assert (row.jurisdiction_code, row.rule_version, row.minimum_age, row.account_id) == (
        "CA-QC",
        1,
        14,
        "acct-9",
    )
    columns = {c.name for c in AgeCheck.__table__.columns}
    assert columns == {
        "id",
        "outcome",
        "reason",
        "jurisdiction_code",
        "rule_id",
        "rule_version",
        "minimum_age",
        "age_capped",
        "checked_at",
        "session_hash",
        "account_id",
    }


def test_rate_limit_per_key_answers_429_with_retry_after(app_factory: Callable[..., Flask]) -> None:
    app = app_factory(rate_limit_per_second=3)
    seed_table(app)
    from agegate.api_keys import service as keys

    with app.app_context(), db.new_session() as s:
        _, key = keys.create_key(s, name="signup", scopes=["age-checks:write"], actor="test")
        s.commit()
    client = app.test_client()
    statuses = [
        client.post("/v1/age-checks", json={"age": 30}, headers={"Authorization": f"Bearer {key}"})
        for _ in range(10)
    ]
    limited = [r for r in statuses if r.status_code == 429]
    assert limited, [r.status_code for r in statuses]
    assert limited[0].headers["Retry-After"] == "1"
    assert limited[0].get_json(force=True)["code"] == "rate_limited"


def test_today_for_the_check_is_the_date_at_utc_minus_12() -> None:
    from agegate.age_checks.ages import today_everywhere

    assert today_everywhere(NOW) == date(2026, 3, 1)


def test_an_overlong_place_is_refused_before_any_lookup(
    signup: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from agegate.jurisdictions import codes

    def no_lookup(raw: str) -> str:
        raise AssertionError("a 100 kB value reached the code lookup")

    monkeypatch.setattr(codes, "normalize", no_lookup)
    monkeypatch.setattr(codes, "normalize_country", no_lookup)
    for field in ("country", "subdivision"):
        response = signup(age=20, **{field: "Germany" * 15_000})
        assert response.status_code == 422
        assert response.get_json()["errors"] == {field: ["Longer than maximum length 16."]}


def test_a_missing_country_uses_default_unless_the_service_requires_one(
    app_factory: Callable[..., Flask], make_key: Callable[..., dict[str, str]]
) -> None:
    for required in (False, True):
        app = app_factory(require_country=required)
        seed_table(app)
        client = app.test_client()
        with app.app_context(), db.new_session() as s:
            _, key = api_keys_service.create_key(
                s, name=f"signup-{str(required).lower()}", scopes=["age-checks:write"], actor="test"
            )
            s.commit()
        headers = {"Authorization": f"Bearer {key}"}
        missing = client.post("/v1/age-checks", json={"age": 30}, headers=headers)
        by_subdivision = client.post(
            "/v1/age-checks", json={"age": 30, "subdivision": "CA-QC"}, headers=headers
        )
        assert by_subdivision.status_code == 200  # the subdivision names the country
        if required:
            assert missing.status_code == 422
            problem = missing.get_json()
            assert problem["code"] == "validation_failed" and list(problem["errors"]) == ["country"]
        else:
            assert missing.status_code == 200
            assert missing.get_json()["jurisdiction"]["matched"] == "default"
