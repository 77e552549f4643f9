"""`agegate targets check|preview`: what an operator runs before trusting a targets file.

Plain click, no Flask app: the targets file and the platform's stores are all these commands
need, so they work where the service's own database is not configured.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from agegate.remediation.targets.base import TargetConfigError, checked_account_id, refusal
from agegate.remediation.targets.config import Targets, load_targets
from agegate.remediation.targets.ids import PATTERN_KEY

TARGETS_FILE_ENV = "AGEGATE_TARGETS_FILE"


@click.group("targets")
def targets() -> None:
    """The purge targets named in AGEGATE_TARGETS_FILE."""


def _load() -> Targets:
    path = os.environ.get(TARGETS_FILE_ENV, "").strip()
    if not path:
        raise click.ClickException(f"{TARGETS_FILE_ENV} is not set: name the targets file")
    try:
        return load_targets(Path(path), os.environ)
    except TargetConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _reason(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


@targets.command("check")
def check_command() -> None:
    """Validate the file and reach every target: one line per target, exit 1 if any failed."""
    loaded = _load()
    failed = False
    try:
        for target in loaded.targets:
            try:
                target.check()
            except Exception as exc:  # a diagnostic: report every target, whatever went wrong
                failed = True
                click.echo(f"{target.name} {target.kind} FAILED: {_reason(exc)}")
            else:
                click.echo(f"{target.name} {target.kind} ok")
    finally:
        loaded.close()
    if failed:
        raise SystemExit(1)


@targets.command("preview")
@click.argument("account_id")
def preview_command(account_id: str) -> None:
    """Count the account's items in every target; delete nothing."""
    try:
        checked_account_id(account_id)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="ACCOUNT_ID") from None
    loaded = _load()
    failed = False
    try:
        for target in loaded.targets:
            if reason := refusal(target, account_id):
                failed = True
                click.echo(
                    f"{target.name} {target.kind} REFUSED: {reason}; a purge would take nothing "
                    f"here and fail the case (fix: a key layout or an {PATTERN_KEY} that tells "
                    "this id apart)"
                )
                continue
            try:
                found = target.count(account_id)
            except Exception as exc:  # report every target, as `check` does
                failed = True
                click.echo(f"{target.name} {target.kind} FAILED: {_reason(exc)}")
            else:
                click.echo(f"{target.name} {target.kind} {found}")
    finally:
        loaded.close()
    if failed:
        raise SystemExit(1)
