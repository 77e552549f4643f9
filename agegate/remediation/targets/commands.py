"""`agegate targets check|preview`: what an operator runs before trusting a targets file.

No Flask app: the targets file and the platform's stores are all these commands need, so
they work where the service's own database is not configured. Without AGEGATE_TARGETS_FILE
they use the file `agegate serve` would, the embedded default's demo platform included.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from agegate.cli_group import CommandGroup
from agegate.remediation.targets.base import TargetConfigError, checked_account_id, refusal
from agegate.remediation.targets.config import Targets, load_targets
from agegate.remediation.targets.ids import PATTERN_KEY

TARGETS_FILE_ENV = "AGEGATE_TARGETS_FILE"


@click.group("targets", cls=CommandGroup)
def targets() -> None:
    """The purge targets: AGEGATE_TARGETS_FILE, or the embedded default's demo platform."""


def _load() -> Targets:
    try:
        return load_targets(_targets_file(), os.environ)
    except TargetConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _targets_file() -> Path:
    """The file `agegate serve` would use: AGEGATE_TARGETS_FILE, else, in the embedded
    default, the demo platform's file in the service's state folder."""
    named = os.environ.get(TARGETS_FILE_ENV, "").strip()
    if named:
        return Path(named)
    from agegate import demo
    from agegate.settings import load_settings

    settings = load_settings(existing_state=True)
    if settings.targets_file is not None:
        return settings.targets_file
    if not settings.embedded:
        raise click.ClickException(f"{TARGETS_FILE_ENV} is not set: name the targets file")
    path = demo.targets_file(settings.var_dir)
    if not path.is_file():
        raise click.ClickException(
            f"{TARGETS_FILE_ENV} is not set, and the embedded default's demo targets file "
            f"{path.resolve()} does not exist (`agegate demo seed` makes it)"
        )
    return path


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
