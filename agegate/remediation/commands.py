"""`agegate cases replay`: after a restore, purge again what completed cases had purged."""

from __future__ import annotations

import getpass
import sys
from datetime import UTC, datetime, timedelta

import click
import marshmallow as ma
from flask import current_app
from flask.cli import with_appcontext

from agegate.cli_group import CommandGroup
from agegate.db import utcnow
from agegate.jurisdictions.schemas import parse_instant
from agegate.remediation.replay import CaseReplay, Replayer, TargetOutcome
from agegate.settings import Settings


def _since(ctx: click.Context, param: click.Parameter, value: str) -> datetime:
    """YYYY-MM-DD (its first instant anywhere on Earth) or an ISO 8601 timestamp with offset."""
    try:
        instant = parse_instant(value)
    except ma.ValidationError as exc:
        raise click.BadParameter(f"{value!r}: {' '.join(map(str, exc.messages))}") from None
    if instant > utcnow():
        raise click.BadParameter(f"{value!r} is in the future: no case has completed since then")
    return instant


@click.group("cases", cls=CommandGroup)
def cases() -> None:
    """Remediation cases."""


@cases.command("replay")
@click.option(
    "--since",
    required=True,
    metavar="DATE",
    callback=_since,
    help="Replay the cases completed at or after this date (YYYY-MM-DD, first instant "
    "anywhere on Earth) or instant (ISO 8601 with offset): the time the restored backup "
    "was taken.",
)
@with_appcontext
def replay_command(since: datetime) -> None:
    """Re-verify every case completed since DATE and purge again whatever a restore brought
    back; exit 1 if anything could not be purged. Safe to interrupt and to run again."""
    settings: Settings = current_app.extensions["agegate.settings"]
    replayer = Replayer(
        current_app.extensions["agegate.engine"],
        current_app.extensions["agegate.targets"],
        batch_size=settings.purge_batch_size,
        lease=timedelta(seconds=settings.lease_seconds),
        actor=f"cli:{getpass.getuser()}",
    )
    case_ids = replayer.completed_since(since)
    if not case_ids:
        click.echo(f"no case completed since {_when(since)}")
        return
    results = []
    try:
        for case_id in case_ids:
            result = replayer.replay(case_id, since)
            results.append(result)
            _print_case(result)
    except KeyboardInterrupt:
        click.echo(
            "interrupted: what was purged so far is recorded; run the same command again",
            err=True,
        )
        sys.exit(130)
    _summary(results, since)


def _when(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _print_case(result: CaseReplay) -> None:
    completed = _when(result.completed_at) if result.completed_at else "?"
    click.echo(f"case {result.case_id} account {result.account_id} (completed {completed})")
    if result.skipped:
        click.echo(f"  NOT REPLAYED: {result.skipped}")
    for t in result.targets:
        counts = f"found {t.found}, purged {t.purged}, remaining {t.remaining}"
        if t.outcome in (TargetOutcome.CLEAN, TargetOutcome.PURGED):
            click.echo(f"  {t.name} {t.kind}: {counts}")
        elif t.outcome is TargetOutcome.FAILED:
            click.echo(f"  {t.name} {t.kind}: FAILED ({t.note}); {counts}")
        else:
            click.echo(f"  {t.name} {t.kind}: {t.outcome.value.replace('_', ' ')} ({t.note})")


def _summary(results: list[CaseReplay], since: datetime) -> None:
    verified = [r for r in results if r.skipped is None]
    purged = [r for r in results if r.found]
    bad = [r for r in results if not r.ok]
    items = sum(t.purged for r in results for t in r.targets)
    click.echo(
        f"{len(results)} case(s) completed since {_when(since)}: {len(verified)} re-verified, "
        f"{len(purged)} had data again ({items} item(s) purged), {len(bad)} not fully purged"
    )
    if bad:
        click.echo(
            "not everything could be purged: see the cases above, then run the same command again",
            err=True,
        )
        sys.exit(1)
