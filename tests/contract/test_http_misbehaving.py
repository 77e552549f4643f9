"""Kind `http` against a service that misbehaves: every answer below ends in a TargetError
with a clear message (a retry), never a `done`, a crash, or a request to another host."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from agegate.extensions import db
from agegate.remediation.models import CaseTarget
from agegate.remediation.targets.base import PurgeContext, TargetError
from agegate.remediation.targets.http import (
    MAX_ANSWER_BYTES,
    MAX_RETRY_AFTER,
    HttpRequest,
    HttpTarget,
    retry_after_seconds,
)
from tests.support.misbehaving_http import HUGE, Misbehaving, misbehaving_server
from tests.support.workers import open_confirmed_cases

SECRET = b"secret-that-must-not-leave-the-origin"


@pytest.fixture
def servers() -> Iterator[tuple[Misbehaving, str, Misbehaving]]:
    """The target's server, its base URL, and a second server on another origin that the
    first one's answers point to."""
    with (
        misbehaving_server() as (other, other_base),
        misbehaving_server(other_base) as (own, base),
    ):
        yield own, base, other


def target(base: str, misbehaviour: str, timeout: float = 5.0) -> HttpTarget:
    request = HttpRequest(
        "provider", "DELETE", f"{base}/{misbehaviour}/{{account_id}}", SECRET, timeout
    )
    return HttpTarget(request, timedelta(days=7), 60.0)


def purge(t: HttpTarget) -> int:
    return t.purge_batch("acct-1", 100, PurgeContext("case-1"))


def test_a_well_behaved_answer_still_counts(servers: tuple[Misbehaving, str, Misbehaving]) -> None:
    _, base, _ = servers
    assert purge(target(base, "ok")) == 2


@pytest.mark.parametrize("misbehaviour", ["other-origin", "other-location"])
def test_a_status_url_on_another_origin_is_never_polled(
    servers: tuple[Misbehaving, str, Misbehaving], misbehaviour: str
) -> None:
    own, base, other = servers
    with pytest.raises(TargetError, match="not on the target's origin") as caught:
        purge(target(base, misbehaviour))
    assert base.removeprefix("http://") in str(caught.value)
    assert other.requests == []  # no request, so no signature, went to the other host
    assert len(own.requests) == 1


def test_redirects_are_not_followed(servers: tuple[Misbehaving, str, Misbehaving]) -> None:
    own, base, other = servers
    with pytest.raises(TargetError, match=r"HTTP 307 \(redirects are not followed\)"):
        purge(target(base, "redirect"))
    with pytest.raises(TargetError, match=r"HTTP 307 \(redirects are not followed\)"):
        purge(target(base, "status-redirect"))  # nor from a status URL
    assert other.requests == []
    assert [path for _, path, _ in own.requests] == [
        "/redirect/acct-1",
        "/status-redirect/acct-1",
        "/redirect/x",
    ]


@pytest.mark.parametrize("misbehaviour", ["file-status", "file-location"])
def test_a_file_url_is_never_opened(
    servers: tuple[Misbehaving, str, Misbehaving], misbehaviour: str
) -> None:
    own, base, _ = servers
    with pytest.raises(TargetError, match="not on the target's origin"):
        purge(target(base, misbehaviour))
    assert len(own.requests) == 1


def test_an_unknown_status_is_not_done(servers: tuple[Misbehaving, str, Misbehaving]) -> None:
    _, base, _ = servers
    with pytest.raises(TargetError, match="unknown status"):
        purge(target(base, "status-unknown"))


def test_a_huge_answer_is_refused_after_the_bound(
    servers: tuple[Misbehaving, str, Misbehaving],
) -> None:
    own, base, _ = servers
    with pytest.raises(TargetError, match=f"answer larger than {MAX_ANSWER_BYTES} bytes"):
        purge(target(base, "huge"))
    # The server writes into socket buffers until the client hangs up; that is far from
    # the gigabyte it announced.
    assert own.bytes_sent < HUGE // 16


@pytest.mark.parametrize("misbehaviour", ["silent", "drip"])
def test_a_server_that_never_finishes_meets_the_deadline(
    servers: tuple[Misbehaving, str, Misbehaving], misbehaviour: str
) -> None:
    _, base, _ = servers
    # `drip` sends a header byte every 0.2 s: each read succeeds, only the deadline ends it.
    with pytest.raises(TargetError, match="no complete answer within 1 s"):
        purge(target(base, misbehaviour, timeout=1.0))


@pytest.mark.parametrize(
    ("misbehaviour", "message"),
    [
        ("bad-count?n=3", "deleted count is not a whole number"),
        ("huge-count", "deleted count is out of range"),
    ],
)
def test_a_count_that_is_not_a_count_is_refused(
    servers: tuple[Misbehaving, str, Misbehaving], misbehaviour: str, message: str
) -> None:
    _, base, _ = servers
    t = HttpTarget(
        HttpRequest("provider", "DELETE", f"{base}/{misbehaviour}", SECRET, 5.0),
        timedelta(days=7),
        60.0,
    )
    with pytest.raises(TargetError, match=message):
        purge(t)


def test_deeply_nested_json_is_no_crash(servers: tuple[Misbehaving, str, Misbehaving]) -> None:
    _, base, _ = servers
    # Unreadable as an object, so nothing is reported: the 2xx counts as one deletion.
    assert purge(target(base, "nested")) == 1


def test_retry_after_in_both_forms() -> None:
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    assert retry_after_seconds("120", now) == 120
    assert retry_after_seconds(" 0 ", now) == 0
    assert retry_after_seconds(format_datetime(now + timedelta(seconds=90), usegmt=True), now) == 90
    assert retry_after_seconds("Mon, 07 Dec 2026 11:00:00 GMT", now) == 0  # already past
    assert retry_after_seconds("9" * 400, now) == MAX_RETRY_AFTER
    assert retry_after_seconds("Fri, 31 Dec 9999 23:59:59 GMT", now) == MAX_RETRY_AFTER
    for nonsense in ("1e308", "-5", "1.5", "soon", "", None):
        assert retry_after_seconds(nonsense, now) is None


def engine_case(
    app_factory: Callable[..., Flask], tmp_path: Any, url: str, cap: int
) -> tuple[Flask, CaseTarget]:
    """One confirmed case purged through an http target at `url`: the step after the
    worker's first attempt."""
    from agegate.remediation.setup import make_worker

    targets = tmp_path / "targets.yaml"
    targets.write_text(f'targets:\n  - {{name: provider, kind: http, url: "{url}"}}\n')
    app = app_factory(targets_file=str(targets), retry_backoff_cap_seconds=cap)
    open_confirmed_cases(app, ["acct-1"])
    worker = make_worker(app)
    with app.app_context():
        for _ in range(5):
            worker.run_once()
            step = db.session.scalars(select(CaseTarget)).one_or_none()  # none before purging
            if step is not None and step.attempts:
                db.session.expunge(step)
                return app, step
            db.session.rollback()
    raise AssertionError("the worker never tried the target")


@pytest.mark.parametrize(
    "value",
    [
        "1e308",  # neither form: the backoff alone
        "9" * 40,  # seconds beyond any timedelta
        format_datetime(datetime.now(UTC) + timedelta(days=30), usegmt=True),
    ],
)
def test_the_engine_retries_within_the_backoff_cap_whatever_retry_after_says(
    servers: tuple[Misbehaving, str, Misbehaving],
    app_factory: Callable[..., Flask],
    tmp_path: Any,
    value: str,
) -> None:
    from urllib.parse import quote

    _, base, _ = servers
    cap = 60
    before = datetime.now(UTC)
    _, step = engine_case(
        app_factory, tmp_path, f"{base}/retry-after/{{account_id}}?value={quote(value)}", cap
    )
    assert step.state.value == "purging" and step.attempts == 1
    assert step.last_error == "TargetError: provider: HTTP 503"
    assert step.next_attempt_at is not None
    wait = (step.next_attempt_at.replace(tzinfo=UTC) - before).total_seconds()
    assert 0 < wait <= cap * 1.5 + 5  # the backoff's jitter reaches 1.5 times the cap


def test_the_engine_never_marks_a_foreign_status_done(
    servers: tuple[Misbehaving, str, Misbehaving],
    app_factory: Callable[..., Flask],
    tmp_path: Any,
) -> None:
    _, base, other = servers
    _, step = engine_case(app_factory, tmp_path, f"{base}/other-origin/{{account_id}}", 60)
    assert step.state.value == "purging" and step.purged == 0
    assert step.last_error is not None and "not on the target's origin" in step.last_error
    assert other.requests == []
