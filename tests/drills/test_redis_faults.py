"""Drill: Redis is flushed, then killed and restarted, during age checks and purges.

Redis only speeds agegate up and carries wake-ups; the database is the truth (docs/remediation.md,
"The engine"). On a private redis-server (never the shared one) this drill keeps a client sending
age checks (new denials, some naming accounts, which opens cases; repeats of earlier
denials; allowed checks) while a worker purges. Midway, FLUSHALL; later, the server is killed
and started again, empty. Throughout, every earlier denial still denies with
`prior_underage_declaration`, and so it does in a new process that knows only the database;
every flagged account's case completes; and afterwards readiness and wake-ups through
Redis come back by themselves, without restarting agegate.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from agegate.api_keys import service as keys
from agegate.extensions import db
from agegate.remediation import engine
from agegate.remediation.models import Case, CaseState, Receipt
from tests.support.drills import report, seed_default_rule, wait_for
from tests.support.servers import PrivateRedis
from tests.support.workers import make_platform, platform_targets, rows_of

KIDS = 400  # accounts a denial may name, each with platform rows
GENERATIONS = 20  # per account: 60 rows
BYSTANDER = "acct-bystander"
HANG = 15.0
WAKE_POLL_SECONDS = 30.0  # while wake-ups are measured, the worker's poll would take this long


@dataclass(frozen=True)
class Answer:
    kind: str
    started: float
    seconds: float
    status: int
    reason: str | None
    redis: str | None  # readyz: what it says about Redis


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    directory = tmp_path / "redis"
    directory.mkdir()
    server = PrivateRedis(directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def kid(n: int) -> str:
    return f"acct-kid-{n}"


class SignupFlow:
    """A thread of age checks against one app; remembers every identity it got denied."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client
        self.answers: list[Answer] = []
        self.denied_sessions: list[str] = []
        self.denied_accounts: list[str] = []
        self.relocked: list[Answer] = []  # repeats of earlier denials
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="drill-signups", daemon=True)

    def _run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            self._deny(n)
            if self.denied_sessions:  # an earlier denial, declared again as an adult
                session = self.denied_sessions[n // 3]
                self.relocked.append(self.check("repeat", age=40, session_id=session))
            if self.denied_accounts:
                account = self.denied_accounts[n // 5]
                self.relocked.append(self.check("repeat", age=40, account_id=account))
            self.check("allowed", age=30, session_id=f"adult-{n}")
            self.readyz()
            time.sleep(0.02)

    def _deny(self, n: int) -> None:
        if n % 2 and len(self.denied_accounts) < KIDS:
            account = kid(len(self.denied_accounts))
            answer = self.check("denial", age=10, session_id=f"kid-{n}", account_id=account)
            if answer.status == 200:
                self.denied_accounts.append(account)
        else:
            answer = self.check("denial", age=10, session_id=f"kid-{n}")
        if answer.status == 200:
            self.denied_sessions.append(f"kid-{n}")

    def check(self, kind: str, **body: Any) -> Answer:
        started = time.monotonic()
        response = self.client.post("/v1/age-checks", json=body)
        payload = response.get_json(silent=True) or {}
        answer = Answer(
            kind,
            started,
            time.monotonic() - started,
            response.status_code,
            payload.get("reason"),
            None,
        )
        self.answers.append(answer)
        return answer

    def ready_since(self, instant: float) -> bool:
        return any(
            a.kind == "readyz" and a.status == 200 and a.started > instant for a in self.answers
        )

    def readyz(self) -> None:
        started = time.monotonic()
        response = self.client.get("/readyz")
        checks = (response.get_json(silent=True) or {}).get("checks", {})
        self.answers.append(
            Answer(
                "readyz",
                started,
                time.monotonic() - started,
                response.status_code,
                None,
                checks.get("redis"),
            )
        )


def signup_client(app: Flask, name: str) -> FlaskClient:
    with app.app_context(), db.new_session() as s:
        _, key = keys.create_key(
            s, name=name, scopes=["age-checks:write", "flags:write", "cases:read"], actor="test"
        )
        s.commit()
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    return client


def wake_latency(app: Flask, client: FlaskClient, account: str, monkeypatch: Any) -> float:
    """Seconds from a flag to its case being contained, with the worker's poll made long:
    only the wake-up through Redis can make it quick."""
    monkeypatch.setattr(engine, "POLL_SECONDS", WAKE_POLL_SECONDS)
    time.sleep(1.5)  # an idle worker ends its short wait and begins a long one
    response = client.post(
        f"/v1/accounts/{account}/flags", json={"reason": "user_report", "confidence": "confirmed"}
    )
    assert response.status_code == 201
    case_id = response.get_json()["case"]["id"]
    try:
        return wait_for(
            lambda: client.get(f"/v1/cases/{case_id}").get_json()["state"] != "open",
            WAKE_POLL_SECONDS / 3,
            f"the wake-up for {account} reaches the worker",
        )
    finally:
        monkeypatch.setattr(engine, "POLL_SECONDS", 1.0)


def test_drill_redis_flush_and_restart(
    private_redis: PrivateRedis,
    app_factory: Callable[..., Flask],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    platform = tmp_path / "platform.db"
    make_platform(platform, {**{kid(n): GENERATIONS for n in range(KIDS)}, BYSTANDER: GENERATIONS})
    settings = {
        "redis_url": private_redis.url,
        "targets_file": str(platform_targets(tmp_path, platform)),
        "grace_suspected_seconds": 0,  # cases from age checks are purged at once
        "lease_seconds": 2,
    }
    app = app_factory(**settings)
    seed_default_rule(app)
    bystander_before = rows_of(platform, BYSTANDER)
    client = signup_client(app, "signup")
    signups = SignupFlow(client)
    stop_worker = threading.Event()
    from agegate.remediation.setup import make_worker

    worker = threading.Thread(
        target=make_worker(app).run_forever, args=(stop_worker,), name="drill-worker"
    )
    worker.start()
    try:
        client.post("/v1/age-checks", json={"age": 30, "session_id": "warm-up"})  # lockouts listen
        listeners = wait_for(
            lambda: (
                private_redis.subscribers("agegate:db0:cases") == 1
                and private_redis.subscribers("agegate:db0:lockouts") == 1
            ),
            10,
            "the worker and the lockouts subscribe",
        )
        wake_before = wake_latency(app, client, "acct-wake-before", monkeypatch)

        signups.thread.start()
        time.sleep(1.5)
        flushed_at = time.monotonic()
        private_redis.client().flushall()
        time.sleep(1.5)
        denied_before_restart = list(signups.denied_sessions), list(signups.denied_accounts)
        down_at = time.monotonic()
        private_redis.stop()
        time.sleep(2.0)
        private_redis.start()
        up_at = time.monotonic()
        ready = wait_for(lambda: signups.ready_since(up_at), 30, "readyz says ready again")
        resubscribed = wait_for(
            lambda: (
                private_redis.subscribers("agegate:db0:cases") == 1
                and private_redis.subscribers("agegate:db0:lockouts") == 1
            ),
            30,
            "the worker and the lockouts subscribe again",
        )
        time.sleep(1.0)
        signups.stop.set()
        signups.thread.join(timeout=HANG)
        answers = list(signups.answers)

        # No lockout lost: the same process, and a new one that knows only the database.
        fresh = signup_client(app_factory(**settings), "signup-fresh")
        sessions, accounts = signups.denied_sessions, signups.denied_accounts
        for identity in [{"session_id": s} for s in sessions] + [
            {"account_id": a} for a in accounts
        ]:
            for where in (client, fresh):
                answer = where.post("/v1/age-checks", json={"age": 40, **identity}).get_json()
                assert answer["reason"] == "prior_underage_declaration", identity

        # No case lost: every denied account's case completes, with exact counts.
        completed = wait_for(lambda: all_completed(app), 120, "every flagged case completes")
        wake_after = wake_latency(app, client, "acct-wake-after", monkeypatch)
        wait_for(lambda: all_completed(app), 30, "the last case completes")
    finally:
        signups.stop.set()
        stop_worker.set()
        worker.join(timeout=30)

    assert set(denied_before_restart[1]) <= set(accounts)
    for answer in answers:
        assert answer.seconds < HANG, answer
        if answer.kind != "readyz":
            assert answer.status == 200, answer  # age checks never needed Redis
    assert signups.relocked and all(
        a.reason == "prior_underage_declaration" for a in signups.relocked
    ), [a for a in signups.relocked if a.reason != "prior_underage_declaration"]
    outage = [a for a in answers if a.kind == "readyz" and down_at <= a.started < up_at]
    assert any(a.status == 503 and a.redis == "unreachable" for a in outage), "outage not seen"
    # A denied account that checks again is flagged again: a later case of it finds nothing
    # left. Over its cases, the receipts count its rows exactly once.
    with app.app_context(), db.new_session() as s:
        receipts = [r.body for r in s.scalars(select(Receipt))]
    found: dict[str, int] = {}
    for receipt in receipts:
        (target,) = receipt["targets"]
        assert target["found"] == target["purged"] and target["remaining"] == 0
        found[receipt["account_id"]] = found.get(receipt["account_id"], 0) + target["found"]
    assert found == {
        **dict.fromkeys(accounts, GENERATIONS * 3),
        "acct-wake-before": 0,
        "acct-wake-after": 0,
    }
    for account in accounts:
        assert rows_of(platform, account) == []
    assert rows_of(platform, BYSTANDER) == bystander_before
    report(
        "redis-flush-and-restart",
        age_checks=sum(a.kind != "readyz" for a in answers),
        denials=len(sessions),
        repeats_denied_again=len(signups.relocked),
        flagged_accounts=len(accounts),
        cases=len(receipts),
        checks_after_flush=sum(a.kind != "readyz" and a.started >= flushed_at for a in answers),
        checks_while_down=sum(a.kind != "readyz" and down_at <= a.started < up_at for a in answers),
        slowest_check_s=f"{max(a.seconds for a in answers if a.kind != 'readyz'):.2f}",
        readyz_ok_after_restart_s=f"{ready:.2f}",
        resubscribed_after_restart_s=f"{resubscribed:.2f}",
        wake_up_before_s=f"{wake_before:.3f}",
        wake_up_after_s=f"{wake_after:.3f}",
        all_cases_completed_after_s=f"{completed:.1f}",
        listeners_subscribed_s=f"{listeners:.2f}",
    )


def all_completed(app: Flask) -> bool:
    with app.app_context(), db.new_session() as s:
        return all(state is CaseState.COMPLETED for state in s.scalars(select(Case.state)))
