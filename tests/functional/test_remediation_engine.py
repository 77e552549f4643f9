"""The remediation workflow end to end, with an in-memory purge target."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from agegate.remediation.engine import Worker
from agegate.remediation.receipts import verify
from agegate.remediation.setup import make_worker
from agegate.remediation.targets.base import PurgeContext, TargetError, checked_account_id
from agegate.remediation.targets.config import load_targets
from tests.support.metrics import grown, sample


class MemoryTarget:
    """A purge target over a dict; can be told to fail its next N batches (or all of them)."""

    kind = "memory"

    def __init__(self, name: str, items: dict[str, set[str]]) -> None:
        self.name = name
        self.items = items
        self.failures_left = 0
        self.lock = threading.Lock()

    def check(self) -> None:
        return None

    def count(self, account_id: str) -> int:
        return len(self.items.get(checked_account_id(account_id), set()))

    def purge_batch(self, account_id: str, limit: int, context: PurgeContext) -> int:
        with self.lock:
            if self.failures_left:
                self.failures_left -= 1
                raise TargetError(f"{self.name} is unavailable (test)")
            held = self.items.get(checked_account_id(account_id), set())
            batch = sorted(held)[:limit]
            held.difference_update(batch)
            return len(batch)


def seed() -> dict[str, set[str]]:
    return {
        "acct-child": {f"gen-{i}" for i in range(23)},
        "acct-adult": {f"gen-{i}" for i in range(7)},
    }


@pytest.fixture
def platform(
    app_factory: Callable[..., Flask],
) -> Iterator[tuple[Flask, MemoryTarget, MemoryTarget, Worker]]:
    app = app_factory(purge_batch_size=5, retry_backoff_cap_seconds=1, max_attempts=3)
    uploads, history = MemoryTarget("uploads", seed()), MemoryTarget("history", seed())
    app.extensions["agegate.targets"] = (uploads, history)
    yield app, uploads, history, make_worker(app)


@pytest.fixture
def ts(make_key: Callable[..., dict[str, str]]) -> dict[str, str]:
    return make_key("flags:write", "cases:read", "cases:write", "legal-holds:write")


def open_case(client: FlaskClient, headers: dict[str, str], confidence: str = "confirmed") -> str:
    response = client.post(
        "/v1/accounts/acct-child/flags",
        json={"reason": "parental_request", "confidence": confidence},
        headers=headers,
    )
    assert response.status_code == 201
    return str(response.get_json()["case"]["id"])


def drive(
    worker: Worker,
    client: FlaskClient,
    headers: dict[str, str],
    case_id: str,
    until: set[str],
    timeout: float = 10,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        case = client.get(f"/v1/cases/{case_id}", headers=headers).get_json()
        if case["state"] in until:
            return case  # type: ignore[no-any-return]
        if not worker.run_once():
            time.sleep(0.05)
    raise AssertionError(f"case stuck in {case['state']}: {case['timeline'][-3:]}")


def test_a_confirmed_case_is_contained_purged_verified_and_receipted(
    platform: Any, ts: dict[str, str]
) -> None:
    app, uploads, history, worker = platform
    client = app.test_client()
    case_id = open_case(client, ts)
    case = drive(worker, client, ts, case_id, {"completed"})
    events = [e["event"] for e in case["timeline"]]
    for expected in (
        "case.opened",
        "case.contained",
        "case.awaiting_purge",
        "case.purging",
        "case.verifying",
        "case.completed",
        "receipt.issued",
    ):
        assert expected in events
    assert uploads.count("acct-child") == 0 and history.count("acct-child") == 0
    assert uploads.items["acct-adult"] == seed()["acct-adult"]  # the other account is untouched
    assert [(t["name"], t["found"], t["purged"], t["remaining"]) for t in case["targets"]] == [
        ("uploads", 23, 23, 0),
        ("history", 23, 23, 0),
    ]

    document = client.get(f"/v1/cases/{case_id}/receipt", headers=ts).get_json()
    receipt = document["receipt"]
    assert receipt["case_id"] == case_id and receipt["account_id"] == "acct-child"
    assert receipt["reasons"] == ["parental_request"]
    assert {t["name"]: (t["found"], t["purged"], t["remaining"]) for t in receipt["targets"]} == {
        "uploads": (23, 23, 0),
        "history": (23, 23, 0),
    }
    jwks = client.get("/v1/receipts/public-key").get_json()
    assert jwks["keys"][0]["kty"] == "OKP" and jwks["keys"][0]["kid"] == document["kid"]
    assert verify(document, jwks)
    tampered = json.loads(json.dumps(document))
    tampered["receipt"]["targets"][0]["purged"] = 22
    assert not verify(tampered, jwks)


def test_a_suspected_case_waits_for_its_appeal_window_until_expedited(
    platform: Any, ts: dict[str, str]
) -> None:
    app, uploads, _, worker = platform
    client = app.test_client()
    case_id = open_case(client, ts, confidence="suspected")
    case = drive(worker, client, ts, case_id, {"awaiting_purge"})
    assert case["purge_after"] > case["opened_at"]
    for _ in range(5):
        worker.run_once()
    assert client.get(f"/v1/cases/{case_id}", headers=ts).get_json()["state"] == "awaiting_purge"
    assert uploads.count("acct-child") == 23
    assert client.get(f"/v1/cases/{case_id}/receipt", headers=ts).status_code == 409
    client.post(f"/v1/cases/{case_id}/expedite", json={"reason": "parent confirmed"}, headers=ts)
    drive(worker, client, ts, case_id, {"completed"})
    assert uploads.count("acct-child") == 0


def test_dismissal_is_refused_once_purging_began(platform: Any, ts: dict[str, str]) -> None:
    app, _uploads, _, worker = platform
    client = app.test_client()
    case_id = open_case(client, ts)
    drive(worker, client, ts, case_id, {"purging"})
    response = client.post(f"/v1/cases/{case_id}/dismiss", json={"reason": "too late"}, headers=ts)
    assert response.status_code == 409
    drive(worker, client, ts, case_id, {"completed"})


def test_a_dismissed_case_purges_nothing(platform: Any, ts: dict[str, str]) -> None:
    app, uploads, _, worker = platform
    client = app.test_client()
    case_id = open_case(client, ts, confidence="suspected")
    drive(worker, client, ts, case_id, {"awaiting_purge"})
    assert (
        client.post(
            f"/v1/cases/{case_id}/dismiss", json={"reason": "adult verified"}, headers=ts
        ).status_code
        == 200
    )
    client.post(f"/v1/cases/{case_id}/expedite", json={}, headers=ts)
    for _ in range(5):
        worker.run_once()
    assert uploads.count("acct-child") == 23


def test_failures_back_off_then_succeed_and_the_receipt_is_exact(
    platform: Any, ts: dict[str, str]
) -> None:
    app, uploads, _, worker = platform
    uploads.failures_left = 2
    client = app.test_client()
    before = client.get("/metrics").text
    case_id = open_case(client, ts)
    case = drive(worker, client, ts, case_id, {"completed"})
    events = [e["event"] for e in case["timeline"]]
    assert events.count("target.retry_scheduled") == 2
    after = client.get("/metrics").text

    def grew(name: str, **labels: str) -> float:
        return grown(before, after, name, **labels)

    assert grew("agegate_purge_failures_total", target="uploads", error="TargetError") == 2
    assert grew("agegate_purge_attempts_total", target="uploads") == 3
    assert grew("agegate_purged_items_total", target="uploads") == 23
    assert grew("agegate_purged_items_total", target="history") == 23
    assert grew("agegate_receipts_signed_total") == 1
    assert sample(after, "agegate_cases", state="completed") == 1
    receipt = client.get(f"/v1/cases/{case_id}/receipt", headers=ts).get_json()["receipt"]
    assert receipt["targets"][0] == {
        "name": "uploads",
        "kind": "memory",
        "found": 23,
        "purged": 23,
        "remaining": 0,
        "held": False,
        "purged_before_hold": None,
    }


def test_a_target_that_keeps_failing_fails_the_case_which_can_be_retried(
    platform: Any, ts: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    app, uploads, _, worker = platform
    uploads.failures_left = 10_000
    client = app.test_client()
    before = client.get("/metrics").text
    case_id = open_case(client, ts)
    case = drive(worker, client, ts, case_id, {"failed"})
    assert "uploads is unavailable" in case["last_error"]
    failed = {t["name"]: t for t in case["targets"]}["uploads"]
    assert failed["state"] == "failed" and failed["attempts"] == 3
    # The metrics and the log say which target failed the case, and why.
    after = client.get("/metrics").text
    failed_cases = "agegate_cases_failed_total"
    assert grown(before, after, failed_cases, target="uploads") == 1
    assert sample(after, "agegate_cases", state="failed") == 1
    (line,) = [r.msg for r in caplog.records if r.levelno == logging.ERROR]
    assert isinstance(line, dict) and line["event"] == "case.failed"
    assert line["target"] == "uploads" and "uploads is unavailable" in line["error"]
    assert line["case_id"] == case_id
    uploads.failures_left = 0
    assert client.post(f"/v1/cases/{case_id}/retry", headers=ts).status_code == 200
    drive(worker, client, ts, case_id, {"completed"})
    assert uploads.count("acct-child") == 0


def test_a_legal_hold_keeps_its_target_until_released(platform: Any, ts: dict[str, str]) -> None:
    app, uploads, history, worker = platform
    client = app.test_client()
    hold = client.post(
        "/v1/accounts/acct-child/legal-holds",
        json={"reason": "litigation", "targets": ["history"]},
        headers=ts,
    )
    assert hold.status_code == 201
    unknown = client.post(
        "/v1/accounts/acct-child/legal-holds", json={"reason": "x", "targets": ["nope"]}, headers=ts
    )
    assert unknown.status_code == 422
    case_id = open_case(client, ts)
    drive(worker, client, ts, case_id, {"on_hold"})
    assert uploads.count("acct-child") == 0 and history.count("acct-child") == 23
    released = client.delete(f"/v1/legal-holds/{hold.get_json()['id']}", headers=ts)
    assert released.status_code == 200 and released.get_json()["released_at"]
    drive(worker, client, ts, case_id, {"completed"})
    assert history.count("acct-child") == 0
    receipt = client.get(f"/v1/cases/{case_id}/receipt", headers=ts).get_json()["receipt"]
    assert [h["id"] for h in receipt["holds"]] == [hold.get_json()["id"]]
    held = {
        t["name"]: (t["held"], t["purged_before_hold"], t["purged"]) for t in receipt["targets"]
    }
    assert held == {"uploads": (False, None, 23), "history": (True, 0, 23)}
    assert client.delete(f"/v1/legal-holds/{hold.get_json()['id']}", headers=ts).status_code == 409


def test_leftovers_found_in_verification_are_purged_and_counted(
    platform: Any, ts: dict[str, str]
) -> None:
    app, uploads, _, worker = platform
    client = app.test_client()
    case_id = open_case(client, ts)
    drive(worker, client, ts, case_id, {"verifying"})
    uploads.items["acct-child"].update({"late-1", "late-2"})  # written while the purge ran
    case = drive(worker, client, ts, case_id, {"completed"})
    assert "target.leftovers_found" in [e["event"] for e in case["timeline"]]
    receipt = client.get(f"/v1/cases/{case_id}/receipt", headers=ts).get_json()["receipt"]
    assert receipt["targets"][0]["found"] == 25 and receipt["targets"][0]["purged"] == 25


def test_without_targets_the_case_fails_and_says_why(app: Flask, ts: dict[str, str]) -> None:
    app.extensions["agegate.targets"] = ()  # (the embedded default would purge its demo platform)
    worker = make_worker(app)
    client = app.test_client()
    case_id = open_case(client, ts)
    case = drive(worker, client, ts, case_id, {"failed"})
    assert "no purge targets" in case["last_error"]


def test_an_expired_lease_is_reclaimed_by_another_worker(platform: Any, ts: dict[str, str]) -> None:
    app, _uploads, _, worker = platform
    client = app.test_client()
    case_id = open_case(client, ts)
    from datetime import timedelta

    from agegate.db import utcnow

    crashed = make_worker(app)
    # Long enough that a loaded machine (CI runs two suites at once) cannot let it lapse
    # between the two claims below.
    crashed.lease = timedelta(seconds=2)
    assert crashed._claim(utcnow()) is not None  # claims, then "dies" without working
    assert worker._claim(utcnow()) is None  # the lease still holds
    time.sleep(2.1)
    before = sample(client.get("/metrics").text, "agegate_lease_reclaims_total")
    case = drive(worker, client, ts, case_id, {"completed"})
    assert "case.lease_reclaimed" in [e["event"] for e in case["timeline"]]
    assert sample(client.get("/metrics").text, "agegate_lease_reclaims_total") == before + 1


class OverlapDetector(MemoryTarget):
    """Fails the test if two calls for the same account ever run at the same time."""

    def __init__(self, name: str, items: dict[str, set[str]]) -> None:
        super().__init__(name, items)
        self.active: set[str] = set()
        self.overlaps = 0
        self.guard = threading.Lock()

    def purge_batch(self, account_id: str, limit: int, context: PurgeContext) -> int:
        with self.guard:
            if account_id in self.active:
                self.overlaps += 1
            self.active.add(account_id)
        try:
            time.sleep(0.002)  # widen the window a second worker would need
            return super().purge_batch(account_id, limit, context)
        finally:
            with self.guard:
                self.active.discard(account_id)


def test_concurrent_workers_never_work_the_same_case_at_once(
    app_factory: Callable[..., Flask], ts: dict[str, str]
) -> None:
    app = app_factory(purge_batch_size=3)
    accounts = {f"acct-{i}": {f"gen-{n}" for n in range(30)} for i in range(6)}
    target = OverlapDetector("uploads", accounts)
    app.extensions["agegate.targets"] = (target,)
    client = app.test_client()
    for account in accounts:
        client.post(
            f"/v1/accounts/{account}/flags",
            json={"reason": "other", "confidence": "confirmed"},
            headers=ts,
        )
    stop = threading.Event()
    workers = [
        threading.Thread(target=make_worker(app).run_forever, args=(stop,)) for _ in range(4)
    ]
    for thread in workers:
        thread.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        states = [
            c["state"] for c in client.get("/v1/cases?limit=10", headers=ts).get_json()["items"]
        ]
        if states.count("completed") == 6:
            break
        time.sleep(0.1)
    stop.set()
    for thread in workers:
        thread.join(timeout=10)
    assert states.count("completed") == 6
    assert target.overlaps == 0
    assert all(not items for items in accounts.values())


@pytest.mark.parametrize("attempt", range(8))
def test_a_dismissal_racing_the_start_of_purging_never_half_purges(
    app_factory: Callable[..., Flask], ts: dict[str, str], attempt: int
) -> None:
    """Either the dismissal wins and nothing is purged, or purging wins and the dismissal is 409."""
    app = app_factory()
    items = {"acct-race": {f"gen-{n}" for n in range(10)}}
    app.extensions["agegate.targets"] = (MemoryTarget("uploads", items),)
    client = app.test_client()
    case_id = open_case_for(client, ts, "acct-race", "suspected")
    worker = make_worker(app)
    drive(worker, client, ts, case_id, {"awaiting_purge"})
    client.post(f"/v1/cases/{case_id}/expedite", json={}, headers=ts)
    answers: list[int] = []
    barrier = threading.Barrier(2)

    def dismiss() -> None:
        barrier.wait()
        reply = app.test_client().post(
            f"/v1/cases/{case_id}/dismiss", json={"reason": f"race {attempt}"}, headers=ts
        )
        answers.append(reply.status_code)

    def work() -> None:
        barrier.wait()
        for _ in range(20):
            with contextlib.suppress(Exception):  # a step that lost the race; the next re-reads
                worker.run_once()

    threads = [threading.Thread(target=dismiss), threading.Thread(target=work)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    state = client.get(f"/v1/cases/{case_id}", headers=ts).get_json()["state"]
    if state == "dismissed":
        assert answers == [200] and len(items["acct-race"]) == 10
    else:
        assert answers == [409] and state in ("purging", "verifying", "completed")


def open_case_for(
    client: FlaskClient, headers: dict[str, str], account: str, confidence: str
) -> str:
    response = client.post(
        f"/v1/accounts/{account}/flags",
        json={"reason": "other", "confidence": confidence},
        headers=headers,
    )
    return str(response.get_json()["case"]["id"])


def test_a_receipt_names_the_rule_an_age_check_applied(
    platform: Any, ts: dict[str, str], make_key: Callable[..., dict[str, str]]
) -> None:
    from tests.functional.test_age_checks import seed_table

    app, _uploads, _, worker = platform
    seed_table(app)
    client = app.test_client()
    client.post(
        "/v1/age-checks",
        json={"age": 12, "country": "DE", "account_id": "acct-child"},
        headers=make_key("age-checks:write"),
    )
    (case,) = client.get("/v1/cases?account_id=acct-child", headers=ts).get_json()["items"]
    client.post(f"/v1/cases/{case['id']}/expedite", json={}, headers=ts)  # self-declared: suspected
    drive(worker, client, ts, case["id"], {"completed"})
    receipt = client.get(f"/v1/cases/{case['id']}/receipt", headers=ts).get_json()["receipt"]
    assert receipt["reasons"] == ["self_declared_underage"]
    assert receipt["rules"] == [{"jurisdiction": "DE", "rule_version": 1, "minimum_age": 16}]


def test_receipts_signed_before_a_key_rotation_still_verify(
    app_factory: Callable[..., Flask], ts: dict[str, str]
) -> None:
    from agegate.remediation.receipts import new_key_pem

    first = app_factory()
    first.extensions["agegate.targets"] = (MemoryTarget("uploads", seed()),)
    client = first.test_client()
    case_id = open_case(client, ts)
    drive(make_worker(first), client, ts, case_id, {"completed"})
    old_receipt = client.get(f"/v1/cases/{case_id}/receipt", headers=ts).get_json()

    rotated = app_factory(receipt_signing_key=new_key_pem().decode())  # the same database
    published = rotated.test_client().get("/v1/receipts/public-key").get_json()
    assert len(published["keys"]) == 2
    assert rotated.extensions["agegate.signer"].kid != old_receipt["kid"]
    assert verify(old_receipt, published)


def test_an_id_a_target_cannot_tell_apart_fails_its_step_and_the_rest_is_purged(
    app_factory: Callable[..., Flask], ts: dict[str, str], tmp_path: Path
) -> None:
    """docs/purge-targets.md, "Exactness": a target never guesses whose items it would take."""
    app = app_factory(purge_batch_size=5, retry_backoff_cap_seconds=1, max_attempts=3)
    media = tmp_path / "media"
    for account in ("acct.child", "acct"):
        (media / "u" / account).mkdir(parents=True)
        (media / "u" / account / "clip.mp4").write_bytes(account.encode())
    targets_file = tmp_path / "targets.yaml"
    targets_file.write_text(
        "targets:\n"
        f"  - {{name: media, kind: files, root: '{media}', paths: ['u/{{account_id}}/'],"
        " account_id_pattern: '[a-z-]+'}\n"
    )
    (files,) = load_targets(targets_file, {}).targets
    history = MemoryTarget("history", {"acct.child": {"gen-1", "gen-2"}, "acct": {"gen-1"}})
    app.extensions["agegate.targets"] = (history, files)
    worker, client = make_worker(app), app.test_client()
    flagged = client.post(
        "/v1/accounts/acct.child/flags",
        json={"reason": "parental_request", "confidence": "confirmed"},
        headers=ts,
    )
    case_id = flagged.get_json()["case"]["id"]

    case = drive(worker, client, ts, case_id, {"failed"})

    refused = "account id 'acct.child' does not match account_id_pattern '[a-z-]+'"
    assert case["last_error"].startswith(f"target media: AccountIdRefused: {refused}")
    steps = {t["name"]: t for t in case["targets"]}
    assert steps["history"]["state"] == "done" and steps["history"]["purged"] == 2
    assert steps["media"]["state"] == "failed" and steps["media"]["purged"] == 0
    assert "purged nothing of the account" in steps["media"]["last_error"]
    assert "target.refused" in [e["event"] for e in case["timeline"]]
    assert history.count("acct.child") == 0 and history.count("acct") == 1
    for account in ("acct.child", "acct"):  # nothing guessed: both directories as they were
        assert (media / "u" / account / "clip.mp4").read_bytes() == account.encode()

    assert client.post(f"/v1/cases/{case_id}/retry", headers=ts).status_code == 200
    case = drive(worker, client, ts, case_id, {"failed"})
    assert refused in case["last_error"]
    assert (media / "u" / "acct.child" / "clip.mp4").exists()

    # The layout fixed (here: ids with '.' are declared), a retry counts and purges it.
    targets_file.write_text(targets_file.read_text().replace("[a-z-]+", "[a-z.-]+"))
    (files,) = load_targets(targets_file, {}).targets
    app.extensions["agegate.targets"] = (history, files)
    assert client.post(f"/v1/cases/{case_id}/retry", headers=ts).status_code == 200
    drive(make_worker(app), client, ts, case_id, {"completed"})
    receipt = client.get(f"/v1/cases/{case_id}/receipt", headers=ts).get_json()["receipt"]
    counts = {t["name"]: (t["found"], t["purged"]) for t in receipt["targets"]}
    assert counts == {"history": (2, 2), "media": (1, 1)}
    assert not (media / "u" / "acct.child").exists()
    assert (media / "u" / "acct" / "clip.mp4").read_bytes() == b"acct"


def test_evidence_that_looks_like_an_age_check_link_is_only_text(
    platform: Any, ts: dict[str, str]
) -> None:
    """Free-text evidence once reached a UUID parse in the receipt step: the case was
    reclaimed every lease period forever. The link to a check is the flag's own column."""
    app, _uploads, _history, worker = platform
    client = app.test_client()
    flagged = client.post(
        "/v1/accounts/acct-child/flags",
        json={"reason": "user_report", "confidence": "confirmed", "evidence": "age-check:see ticket 12"},
        headers=ts,
    )  # fmt: skip
    case_id = flagged.get_json()["case"]["id"]
    case = drive(worker, client, ts, case_id, {"completed", "failed"})
    assert case["state"] == "completed"
    assert "case.step_failed" not in [e["event"] for e in case["timeline"]]
    receipt = client.get(f"/v1/cases/{case_id}/receipt", headers=ts).get_json()["receipt"]
    assert receipt["rules"] == []


class PoisonTarget(MemoryTarget):
    """Its count raises what no target should (not a TargetError) while `poisoned`."""

    poisoned = True

    def count(self, account_id: str) -> int:
        if self.poisoned:
            raise RuntimeError("poisoned count (test)")
        return super().count(account_id)


def test_a_step_that_keeps_raising_fails_the_case_after_the_last_attempt(
    app_factory: Callable[..., Flask], ts: dict[str, str]
) -> None:
    app = app_factory(purge_batch_size=5, retry_backoff_cap_seconds=1, max_attempts=3)
    poison = PoisonTarget("uploads", seed())
    app.extensions["agegate.targets"] = (poison,)
    worker, client = make_worker(app), app.test_client()
    before = client.get("/metrics").text
    case_id = open_case(client, ts)

    case = drive(worker, client, ts, case_id, {"failed"}, timeout=20)

    failures = [e for e in case["timeline"] if e["event"] == "case.step_failed"]
    assert [(e["data"]["state"], e["data"]["attempt"]) for e in failures] == [
        ("awaiting_purge", 1), ("awaiting_purge", 2), ("awaiting_purge", 3)
    ]  # fmt: skip
    assert failures[0]["data"]["error"] == "RuntimeError: poisoned count (test)"
    assert case["last_error"] == (
        "the awaiting_purge step failed 3 times: RuntimeError: poisoned count (test)"
    )
    listed = client.get("/v1/cases?state=failed", headers=ts).get_json()["items"]
    assert [c["id"] for c in listed] == [case_id]
    after = client.get("/metrics").text
    assert grown(before, after, "agegate_step_failures_total", state="awaiting_purge", error="RuntimeError") == 3  # fmt: skip
    assert grown(before, after, "agegate_cases_failed_total", target="") == 1
    assert not worker.run_once()  # failed is final until a person acts: no loop
    assert len(client.get(f"/v1/cases/{case_id}", headers=ts).get_json()["timeline"]) == len(case["timeline"])  # fmt: skip

    poison.poisoned = False
    assert client.post(f"/v1/cases/{case_id}/retry", headers=ts).status_code == 200
    assert client.get(f"/v1/cases/{case_id}", headers=ts).get_json()["state"] == "awaiting_purge"
    drive(worker, client, ts, case_id, {"completed"})
    assert poison.count("acct-child") == 0 and poison.count("acct-adult") == 7


@pytest.mark.parametrize(
    ("failed_in", "resumed"),
    [
        ("dismissed", "dismissed"),
        ("open", "open"),
        ("verifying", "verifying"),
        (None, "awaiting_purge"),
    ],
)
def test_retry_resumes_the_state_a_case_failed_in(
    platform: Any, ts: dict[str, str], failed_in: str | None, resumed: str
) -> None:
    """A dismissed case whose release hooks failed must run them again, never go on to
    purge; a case failed before the state was kept (None) resumes the start of purging."""
    from agegate.extensions import db
    from agegate.remediation.models import Case, CaseState

    app, uploads, _history, worker = platform
    client = app.test_client()
    case_id = open_case(client, ts)
    with app.app_context(), db.new_session() as s:
        case = s.get(Case, uuid.UUID(case_id))
        assert case is not None
        case.state, case.next_run_at = CaseState.FAILED, None
        case.failed_state = CaseState(failed_in) if failed_in else None
        s.commit()
    assert client.post(f"/v1/cases/{case_id}/retry", headers=ts).status_code == 200
    assert client.get(f"/v1/cases/{case_id}", headers=ts).get_json()["state"] == resumed
    if failed_in == "dismissed":
        worker.run_once()
        assert client.get(f"/v1/cases/{case_id}", headers=ts).get_json()["state"] == "dismissed"
        assert uploads.count("acct-child") == 23  # released, never purged


class HoldingTarget(MemoryTarget):
    """Runs `during` inside its `at`-th batch, before deleting: a hold committed mid-batch."""

    def __init__(
        self, name: str, items: dict[str, set[str]], at: int, during: Callable[[], None]
    ) -> None:
        super().__init__(name, items)
        self.batches, self.at, self.during = 0, at, during

    def purge_batch(self, account_id: str, limit: int, context: PurgeContext) -> int:
        self.batches += 1
        if self.batches == self.at:
            self.during()
        return super().purge_batch(account_id, limit, context)


def test_a_hold_placed_during_a_batch_stops_the_target_after_it(
    app_factory: Callable[..., Flask], ts: dict[str, str]
) -> None:
    """docs/remediation.md, "Legal holds": the batch in flight ends, and nothing more."""
    app = app_factory(purge_batch_size=5)
    client = app.test_client()
    holds: list[str] = []

    def place_hold() -> None:
        placed = client.post(
            "/v1/accounts/acct-child/legal-holds", json={"reason": "litigation"}, headers=ts
        )
        assert placed.status_code == 201
        holds.append(placed.get_json()["id"])

    history = HoldingTarget("history", seed(), at=2, during=place_hold)
    app.extensions["agegate.targets"] = (history,)
    worker = make_worker(app)
    case_id = open_case(client, ts)

    case = drive(worker, client, ts, case_id, {"on_hold"})

    assert history.batches == 2 and history.count("acct-child") == 13  # two batches of 5
    (step,) = case["targets"]
    assert step["state"] == "held" and step["purged"] == 10
    held = [e for e in case["timeline"] if e["event"] == "target.held"]
    assert [e["data"]["purged_before_hold"] for e in held] == [10]
    assert not worker.run_once() and history.count("acct-child") == 13  # it waits

    assert client.delete(f"/v1/legal-holds/{holds[0]}", headers=ts).status_code == 200
    drive(worker, client, ts, case_id, {"completed"})
    receipt = client.get(f"/v1/cases/{case_id}/receipt", headers=ts).get_json()["receipt"]
    (target,) = receipt["targets"]
    assert target == {
        "name": "history", "kind": "memory", "found": 23, "purged": 23, "remaining": 0,
        "held": True, "purged_before_hold": 10,
    }  # fmt: skip
    assert history.count("acct-adult") == 7


def test_a_worker_whose_lease_was_taken_over_stops_at_its_next_write(
    app_factory: Callable[..., Flask], ts: dict[str, str]
) -> None:
    """docs/remediation.md, "The engine": every write of a step is fenced on the lease."""
    from datetime import timedelta

    from sqlalchemy import update

    from agegate.db import utcnow
    from agegate.extensions import db
    from agegate.remediation.models import Case, CaseTarget

    app = app_factory(purge_batch_size=5)
    client = app.test_client()

    def set_lease(owner: str, seconds: float) -> None:
        with app.app_context(), db.new_session() as s:
            s.execute(update(Case).values(lease_owner=owner, lease_expires_at=utcnow() + timedelta(seconds=seconds)))  # fmt: skip
            s.commit()

    # In its second batch the worker stalls past its lease, and another takes the case over.
    history = HoldingTarget("history", seed(), at=2, during=lambda: set_lease("another-worker", 30))
    app.extensions["agegate.targets"] = (history,)
    worker = make_worker(app)
    before = client.get("/metrics").text
    case_id = open_case(client, ts)

    case = drive(worker, client, ts, case_id, {"purging"})
    while history.batches < 2:
        worker.run_once()

    with app.app_context(), db.new_session() as s:
        (step,) = s.query(CaseTarget).all()
        owner = s.get(Case, uuid.UUID(case_id)).lease_owner  # type: ignore[union-attr]
    assert history.count("acct-child") == 13  # the batch in flight went ...
    assert step.purged == 5 and owner == "another-worker"  # ... but nothing of it was written
    assert grown(before, client.get("/metrics").text, "agegate_leases_lost_total") == 1

    set_lease("another-worker", -1)  # the other worker dies in turn: the case is re-claimed
    case = drive(worker, client, ts, case_id, {"completed"})
    assert "case.lease_reclaimed" in [e["event"] for e in case["timeline"]]
    receipt = client.get(f"/v1/cases/{case_id}/receipt", headers=ts).get_json()["receipt"]
    (target,) = receipt["targets"]
    assert (target["found"], target["purged"], target["remaining"]) == (23, 23, 0)
    assert history.count("acct-child") == 0 and history.count("acct-adult") == 7


def test_a_batch_longer_than_the_lease_keeps_it(
    app_factory: Callable[..., Flask], ts: dict[str, str]
) -> None:
    """The heartbeat renews the lease while a step runs: a slow batch is not taken over."""
    from agegate.db import utcnow

    app = app_factory(purge_batch_size=5, lease_seconds=1)
    client = app.test_client()
    claims: list[object] = []

    def stall() -> None:
        time.sleep(1.6)  # longer than the lease
        claims.append(make_worker(app)._claim(utcnow()))

    history = HoldingTarget("history", seed(), at=1, during=stall)
    app.extensions["agegate.targets"] = (history,)
    case_id = open_case(client, ts)
    case = drive(make_worker(app), client, ts, case_id, {"completed"})
    assert claims == [None]  # the other worker found nothing to claim
    assert "case.lease_reclaimed" not in [e["event"] for e in case["timeline"]]
