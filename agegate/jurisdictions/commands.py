"""`agegate jurisdictions import|export|show`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from flask.cli import with_appcontext

from agegate.cli_group import CommandGroup
from agegate.db import utcnow
from agegate.errors import ValidationError
from agegate.extensions import db
from agegate.jurisdictions import codes, files, service
from agegate.jurisdictions.schemas import format_instant


@click.group("jurisdictions", cls=CommandGroup)
def jurisdictions() -> None:
    """The jurisdiction table maintained by legal."""


@jurisdictions.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--reason", "reason", default=None, help="Why (recorded on every version).")
@click.option("--dry-run", is_flag=True, help="Show the diff; change nothing.")
@click.option("--replace", is_flag=True, help="Retire codes absent from the file (never default).")
@with_appcontext
def import_command(file: Path, reason: str | None, dry_run: bool, replace: bool) -> None:
    """Import a CSV file, or a JSON file of {"rules": a list of rules}, atomically."""
    from agegate.cli import cli_actor

    text = file.read_text(encoding="utf-8")
    try:
        rows = json.loads(text)["rules"] if file.suffix == ".json" else files.read_csv(text)
        rules = files.parse_rules(rows)
    except ValidationError as exc:
        click.echo(f"import rejected: {exc.detail}", err=True)
        for field, messages in exc.errors.items():
            for message in messages:
                click.echo(f"  {field}: {message}", err=True)
        sys.exit(1)
    now = utcnow()
    with db.new_session() as session:
        plan = service.plan_import(session, rules, replace=replace, now=now)
        _print_plan(plan)
        if dry_run or not plan.changes:
            click.echo("dry run: nothing changed" if dry_run else "nothing to change")
            return
        service.apply_import(
            session, plan, actor=cli_actor(), reason=reason or f"import of {file.name}", now=now
        )
        session.commit()
    click.echo(f"imported: {len(plan.added)} versions added, {len(plan.retired)} codes retired")


def _print_plan(plan: service.ImportPlan) -> None:
    for rule, before in plan.added:
        was = "new code" if before is None else f"was {before.minimum_age} ({before.status.value})"
        click.echo(
            f"+ {rule.code}: {rule.minimum_age} {rule.status.value} from "
            f"{format_instant(rule.effective_from)}  [{was}]"
        )
    for code in plan.retired:
        click.echo(f"- {code}: retired (absent from the file)")
    click.echo(
        f"{len(plan.added)} to add, {plan.unchanged} unchanged, {len(plan.retired)} to retire"
    )


@jurisdictions.command("export")
@with_appcontext
def export_command() -> None:
    """Print the current, scheduled and proposed rules as CSV."""
    now = utcnow()
    with db.new_session() as session:
        table = service.load_table(session)
    rows = [v for code in table.codes() for v in table.history(code).live(now)]
    click.echo(files.write_csv(rows), nl=False)


@jurisdictions.command("show")
@click.argument("code")
@with_appcontext
def show_command(code: str) -> None:
    """Show one code: its current rule, scheduled and proposed versions."""
    try:
        code = codes.normalize(code)
    except codes.CodeError as exc:
        raise click.BadParameter(str(exc), param_hint="CODE") from None
    now = utcnow()
    with db.new_session() as session:
        history = service.load_table(session).history(code)
    current = history.in_force(now)
    click.echo(f"{code}  {codes.name(code)}")
    click.echo(f"current: {_line(current) if current else 'no rule in force'}")
    for version in history.live(now):
        if version is not current:
            when = "scheduled" if version.effective_from > now else "tracked"
            click.echo(f"{when}: {_line(version)}")


def _line(v: service.RuleVersion) -> str:
    return (
        f"{v.minimum_age} ({v.status.value}) from {format_instant(v.effective_from)}, "
        f"version {v.version}: {v.citation}"
    )
