"""Drill: PostgreSQL restarts under a serving app and a purging worker.

A private PostgreSQL cluster (never the shared server) serves an app and an `agegate worker`
process while a client keeps sending age checks, flags and rule imports. The server stops,
stays down for a few seconds, and starts again. Meanwhile every request gets an answer
within seconds: a success, or a 503 with problem details, never a 500. Afterwards nothing is
half-written, and the same app and the same worker process carry on without a restart.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, text

from agegate.api_keys import service as keys
from agegate.audit import service as audit
from agegate.audit.models import AuditEvent
from agegate.db import make_engine
from agegate.extensions import db
from agegate.flags.models import Flag
from agegate.jurisdictions.models import JurisdictionRule
from agegate.migrations import upgrade
from agegate.remediation.models import Case, CaseEvent, CaseState, Receipt
from tests.support.drills import report, seed_default_rule, wait_for
from tests.support.servers import PrivatePostgres
from tests.support.workers import (
    make_platform,
    open_confirmed_cases,
    platform_targets,
    rows_of,
    start_worker,
    worker_env,
)

CHILDREN = {f"acct-child-{i}": 800 for i in range(4)}  # 2,400 rows each
BYSTANDER = "acct-bystander"
DOWN_SECONDS = 3.0
IMPORT_CODES = ["AT", "BE", "BG", "CY", "CZ", "DK", "EE", "FI", "GR", "HR", "HU", "IE", "LT"]
HANG = 15.0  # no single request may take longer: connect_timeout is 5 s


@dataclass(frozen=True)
class Answer:
    kind: str
    number: int
    started: float  # monotonic
    seconds: float
    status: int
    code: str | None
    retry_after: str | None


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    try:
        server.start()
        admin = make_engine(server.url(), 1)
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("CREATE DATABASE agegate"))
        admin.dispose()
        engine = make_engine(server.url("agegate"), 1)
        upgrade(engine)
        engine.dispose()
        yield server
    finally:
        server.remove()


class Client:
    """Keeps sending a mix of requests from a thread and records every answer."""

    def __init__(self, client: FlaskClient, headers: dict[str, str]) -> None:
        self.client = client
        self.headers = headers
        self.answers: list[Answer] = []
        self.stop = threading.Event()
        self.number = 0
        self.thread = threading.Thread(target=self._run, name="drill-client", daemon=True)

    def _run(self) -> None:
        kinds = ["readyz", "allowed", "denial", "flag", "import", "cases"]
        while not self.stop.is_set():
            self.number += 1
            self.send(kinds[self.number % len(kinds)], self.number)
            time.sleep(0.01)

    def send(self, kind: str, number: int) -> Answer:
        started = time.monotonic()
        response = self._request(kind, number)
        body = response.get_json(silent=True) or {}
        answer = Answer(
            kind,
            number,
            started,
            time.monotonic() - started,
            response.status_code,
            body.get("code") if response.status_code >= 400 else None,
            response.headers.get("Retry-After"),
        )
        if response.status_code >= 400:
            assert response.mimetype == "application/problem+json", (kind, response.status_code)
        self.answers.append(answer)
        return answer

    def ready_since(self, instant: float) -> bool:
        return any(
            a.kind == "readyz" and a.status == 200 and a.started > instant for a in self.answers
        )

    def _request(self, kind: str, number: int) -> Any:
        client, headers = self.client, self.headers
        if kind == "readyz":
            return client.get("/readyz")
        if kind in ("allowed", "denial"):
            age = 30 if kind == "allowed" else 10
            body = {"age": age, "country": "DE", "session_id": f"session-{number}"}
            return client.post("/v1/age-checks", json=body, headers=headers)
        if kind == "flag":
            return client.post(
                f"/v1/accounts/{flagged_account(number)}/flags",
                json={"reason": "user_report", "confidence": "confirmed"},
                headers={**headers, "Idempotency-Key": f"drill-flag-{number}"},
            )
        if kind == "import":
            return client.post(
                f"/v1/jurisdictions/import?change_reason=drill-import-{number}",
                json={"rules": import_rules(number)},
                headers=headers,
            )
        return client.get("/v1/cases?limit=5", headers=headers)


def flagged_account(number: int) -> str:
    return f"acct-flagged-{number}"


def import_rules(number: int) -> list[dict[str, Any]]:
    """A whole table whose every row is new (its notes name the import)."""
    return [
        {
            "code": code,
            "minimum_age": 13 + (number + i) % 4,
            "effective_from": "2020-01-01",
            "status": "in_force",
            "citation": f"Drill Act {code}",
            "notes": f"import {number}",
        }
        for i, code in enumerate(IMPORT_CODES)
    ]


# psycopg warns when it garbage-collects a server-side cursor (the lockouts' streamed poll)
# whose connection the server killed: nothing can close it, and PostgreSQL dropped it anyway.
@pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <function ServerCursorMixin.__del__"
    ":pytest.PytestUnraisableExceptionWarning"
)
def test_drill_postgres_restart(
    private_postgres: PrivatePostgres,
    app_factory: Callable[..., Flask],
    settings_overrides: dict[str, Any],
    make_key: Callable[..., dict[str, str]],
    tmp_path: Path,
) -> None:
    platform = tmp_path / "platform.db"
    make_platform(platform, {**CHILDREN, BYSTANDER: 300})
    settings = {
        "database_url": private_postgres.url("agegate"),
        "targets_file": str(platform_targets(tmp_path, platform)),
        "purge_batch_size": 10,
        "lease_seconds": 1,
        "retry_backoff_cap_seconds": 1,
    }
    app = app_factory(**settings)
    # Answer as in production: an error that escapes the views (a failed commit) is rendered
    # by the error handlers instead of being raised into the test.
    app.config["PROPAGATE_EXCEPTIONS"] = False
    seed_default_rule(app)
    with app.app_context(), db.new_session() as s:
        _, key = keys.create_key(
            s,
            name="drill",
            scopes=["age-checks:write", "flags:write", "cases:read", "jurisdictions:write"],
            actor="test",
        )
        s.commit()
    headers = {"Authorization": f"Bearer {key}"}
    bystander_before = rows_of(platform, BYSTANDER)
    open_confirmed_cases(app, CHILDREN)
    worker_log = tmp_path / "worker.log"
    worker = start_worker(worker_env(settings_overrides, settings), log=worker_log)
    load = Client(app.test_client(), headers)
    try:
        wait_for(lambda: purging(app), 30, "the worker starts purging")
        load.thread.start()
        time.sleep(1.5)

        stopped_at = time.monotonic()
        private_postgres.stop("fast")
        time.sleep(DOWN_SECONDS)
        private_postgres.start()
        up_at = time.monotonic()
        ready = wait_for(lambda: load.ready_since(up_at), 30, "readyz says ready again")
        time.sleep(3.0)
        load.stop.set()
        load.thread.join(timeout=HANG)

        answers = list(load.answers)
        during = [a for a in answers if stopped_at <= a.started < up_at]
        after = [a for a in answers if a.started >= up_at]
        for answer in answers:
            assert answer.status < 500 or (
                answer.status == 503
                and answer.code in ("dependency_unavailable", "not_ready")
                and answer.retry_after
            ), answer
            assert answer.seconds < HANG, answer
        assert any(a.status == 503 for a in during), "the outage was not seen"
        # Recovered: once readyz says so, every kind of request succeeds again.
        recovered_at = min(a.started for a in after if a.kind == "readyz" and a.status == 200)
        late = [a for a in after if a.started > recovered_at]
        assert late and all(a.status < 400 for a in late), [a for a in late if a.status >= 400]

        stale = quiet_restarts(private_postgres, Client(app.test_client(), headers))

        retried = retry_failed_flags(load, answers)
        wait_for(lambda: all_completed(app), 90, "every case completes")
        assert worker.poll() is None, "the worker process died"
    finally:
        load.stop.set()
        worker.terminate()
        worker.wait(timeout=30)

    cases = check_nothing_half_written(app, answers, retried)
    for account in CHILDREN:
        assert rows_of(platform, account) == []
    assert rows_of(platform, BYSTANDER) == bystander_before
    failures = Counter(a.kind for a in answers if a.status >= 400)
    report(
        "postgres-restart",
        requests=len(answers),
        down_s=DOWN_SECONDS,
        requests_while_down=len(during),
        answered_503_while_down=sum(a.status == 503 for a in during),
        answered_503_after_start=sum(a.status == 503 for a in after),
        slowest_answer_s=f"{max(a.seconds for a in answers):.2f}",
        readyz_ok_after_start_s=f"{ready:.2f}",
        failures_by_kind=dict(failures),
        first_answers_after_a_quiet_restart=stale,
        flags_retried=len(retried),
        cases=cases,
    )


def quiet_restarts(server: PrivatePostgres, client: Client) -> dict[str, list[int]]:
    """Restarts with no request in between, so every pooled connection is stale: how do the
    first requests after each fare? (Each kind after a restart of its own, three in a row;
    the server is killed, as in a crash, so sessions end without a word.)"""
    statuses: dict[str, list[int]] = {}
    for kind in ("denial", "flag", "import", "cases", "readyz"):
        server.stop("immediate")
        server.start()
        for attempt in range(3):
            answer = client.send(kind, 100_000 + 10 * len(statuses) + attempt)
            statuses.setdefault(kind, []).append(answer.status)
            assert answer.status < 500 or answer.code in ("dependency_unavailable", "not_ready"), (
                answer
            )
        assert statuses[kind][-1] < 400, (kind, statuses[kind])  # it does not keep failing
    return statuses


def retry_failed_flags(load: Client, answers: list[Answer]) -> list[int]:
    """The flags that got a 503, sent again with the same Idempotency-Key: each now succeeds."""
    retried = []
    for answer in answers:
        if answer.kind == "flag" and answer.status >= 400:
            again = load.send("flag", answer.number)
            assert again.status in (200, 201), again
            retried.append(answer.number)
    return retried


def check_nothing_half_written(app: Flask, answers: list[Answer], retried: list[int]) -> int:
    """Every case with its flag and events, every flag audited, every import whole; the
    number of cases."""
    with app.app_context(), db.new_session() as s:
        assert audit.verify(s).ok
        cases = s.scalars(select(Case)).all()
        events = s.scalars(select(AuditEvent)).all()
        flags = {str(flag_id) for flag_id in s.scalars(select(Flag.id))}
        assert flags == {e.data["flag_id"] for e in events if e.event == "flag.created"}
        imported = Counter(e.data["reason"] for e in events if e.event == "jurisdiction.imported")
        for case in cases:
            assert s.scalar(select(func.count()).where(Flag.case_id == case.id)), case.account_id
            opened = select(func.count()).where(
                CaseEvent.case_id == case.id, CaseEvent.event == "case.opened"
            )
            assert s.scalar(opened) == 1, case.account_id
            audited = select(func.count()).where(
                AuditEvent.event == "case.opened", AuditEvent.subject_id == str(case.id)
            )
            assert s.scalar(audited) == 1, case.account_id
        flagged = [a.number for a in answers if a.kind == "flag" and a.status < 400] + retried
        for number in flagged:  # exactly one case per flagged account, none without its flag
            account_cases = [c for c in cases if c.account_id == flagged_account(number)]
            assert len(account_cases) == 1, number
        for answer in (a for a in answers if a.kind == "import"):
            reason = f"drill-import-{answer.number}"
            written = s.scalar(select(func.count()).where(JurisdictionRule.change_reason == reason))
            assert written in (0, len(IMPORT_CODES)), (reason, written)  # all or nothing
            assert imported[reason] == (written > 0), reason  # with its audit event
            if answer.status == 200:
                assert written == len(IMPORT_CODES), reason
        receipts = s.scalars(select(Receipt)).all()
    for receipt in receipts:
        for target in receipt.body["targets"]:
            assert target["found"] == target["purged"] and target["remaining"] == 0
    counts = {r.body["account_id"]: r.body["targets"][0]["found"] for r in receipts}
    for account, generations in CHILDREN.items():
        assert counts[account] == generations * 3
    return len(cases)


def purging(app: Flask) -> bool:
    with app.app_context(), db.new_session() as s:
        return bool(s.scalar(select(func.count()).where(Case.state == CaseState.PURGING)))


def all_completed(app: Flask) -> bool:
    with app.app_context(), db.new_session() as s:
        states = s.scalars(select(Case.state)).all()
    return all(state is CaseState.COMPLETED for state in states)
