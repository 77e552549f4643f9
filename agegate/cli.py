"""The `agegate` command: click groups of agegate's own commands (agegate/cli_group.py)."""

from __future__ import annotations

import getpass
import heapq
import os
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

import click
from flask import Flask
from flask.cli import ScriptInfo, with_appcontext

from agegate import __version__, create_app, logs, migrations
from agegate.api_keys import service as api_keys
from agegate.api_keys.models import Scope
from agegate.audit import service as audit
from agegate.cli_group import CommandGroup
from agegate.errors import AgegateError
from agegate.extensions import db
from agegate.jurisdictions import commands as jurisdictions_commands
from agegate.remediation import commands as remediation_commands
from agegate.remediation.targets import commands as targets_commands
from agegate.settings import SettingsError, load_settings


def cli_actor() -> str:
    return f"cli:{getpass.getuser()}"


def _app_with_existing_state() -> Flask:
    """The app of a one-off command: the service's state, never a fresh one made where the
    command happens to run (`serve`, `db upgrade` and `demo seed` make state)."""
    return create_app(existing_state=True)


class _Agegate(CommandGroup):
    sections = (
        ("Run the service", ("serve", "worker", "db")),
        ("Access", ("keys",)),
        ("The jurisdiction table", ("jurisdictions",)),
        ("Remediation", ("cases", "targets", "receipts", "audit")),
        ("Trying agegate out", ("demo",)),
    )


@click.group(cls=_Agegate, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="agegate")
def cli() -> None:
    """agegate: age checks, the jurisdiction table and child-data remediation."""


@cli.command()
@click.option("--bind", default=None, metavar="HOST:PORT", help="Address to listen on.")
def serve(bind: str | None) -> None:
    """Run the service (gunicorn; the embedded default needs no configuration)."""
    from agegate.serving import serve as run_server

    run_server(load_settings(), bind)


@cli.group("db")
def db_group() -> None:
    """The database schema."""


@db_group.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending migration."""
    from agegate.db import make_engine

    settings = load_settings()
    if settings.embedded:
        settings.var_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url, 1)
    try:
        migrations.upgrade(engine)
    finally:
        engine.dispose()
    click.echo("database schema is up to date")


@cli.group()
def keys() -> None:
    """API keys for the signup flow, trust and safety, and legal."""


@keys.command("create")
@click.option("--name", required=True, help="Who the key is for, e.g. signup-flow.")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    type=click.Choice([s.value for s in Scope]),
    help="Repeat for each scope.",
)
@click.option(
    "--replace",
    is_flag=True,
    help="Revoke the live key with this name, if there is one, and create the new key in its place.",
)
@with_appcontext
def keys_create(name: str, scopes: tuple[str, ...], replace: bool) -> None:
    """Create a key; it is printed once, alone on the last line."""
    with db.new_session() as session:
        replacing = replace and api_keys.live_key_exists(session, name)
        _, plaintext = api_keys.create_key(
            session, name=name, scopes=scopes, actor=cli_actor(), replace=replace
        )
        session.commit()
    if replacing:
        click.echo(f"revoked the earlier key {name!r}: it stops working within 5 seconds")
    click.echo(f"created key {name!r} with scopes: {', '.join(scopes)}")
    click.echo("it is shown only now; store it in your secret manager:")
    click.echo(plaintext)


@keys.command("list")
@with_appcontext
def keys_list() -> None:
    """Every key with its scopes and state (never the key itself)."""
    with db.new_session() as session:
        rows = api_keys.list_keys(session)
    if not rows:
        click.echo("no keys yet: agegate keys create --name NAME --scope SCOPE")
    for key in rows:
        state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}Z" if key.revoked_at else "live"
        click.echo(
            f"{key.name}\t{state}\t{' '.join(key.scopes)}\tcreated {key.created_at:%Y-%m-%d}"
        )


@keys.command("revoke")
@click.argument("name")
@with_appcontext
def keys_revoke(name: str) -> None:
    """Revoke the live key with this name (effective everywhere within seconds)."""
    with db.new_session() as session:
        api_keys.revoke_key(session, name=name, actor=cli_actor())
        session.commit()
    click.echo(f"revoked key {name!r}")


@cli.group("audit")
def audit_group() -> None:
    """The hash-chained audit log."""


@audit_group.command("verify")
@click.option(
    "--receipts",
    "receipts_dir",
    type=click.Path(path_type=Path),
    help="A folder of receipts kept outside agegate (*.json, as GET /v1/cases/{id}/receipt "
    "gave them): the chain must hold their anchors too.",
)
@with_appcontext
def audit_verify(receipts_dir: Path | None) -> None:
    """Check every link of the chain, and that it still holds the audit anchor of every
    receipt; exit 1 at the first broken one."""
    from agegate.remediation import anchors, service
    from agegate.remediation.receipts import jwks

    folder = None
    if receipts_dir is not None:  # read before the snapshot below, which then holds them all
        with db.new_session() as session:
            key_set = jwks(service.receipt_keys(session))
        folder = anchors.read_folder(receipts_dir, key_set)
        for problem in folder.problems:
            click.echo(problem, err=True)
    kept = folder.anchors if folder else []
    with db.new_session() as session:
        if session.get_bind().dialect.name == "postgresql":
            # One snapshot for the chain, its head and the receipts, so that a service
            # writing meanwhile is no false alarm. (SQLite's transaction already is one.)
            session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        with closing(anchors.stored_anchors(session)) as stored:
            result = audit.verify(session, heapq.merge(stored, kept))
        predating = anchors.stored_without_anchor(session) + (
            folder.without_anchor if folder else 0
        )
    if not result.ok:
        click.echo(f"audit chain BROKEN at event {result.broken_at}: {result.problem}", err=True)
        click.echo(f"{result.events} events before it verified", err=True)
        sys.exit(1)
    summary = (
        f"audit chain intact: {result.events} events verified, "
        f"{result.anchors} receipt anchor(s) found in it"
    )
    if predating:
        summary += f" ({predating} receipt(s) predate anchors)"
    if folder is not None:
        summary += f"; {folder.read} file(s) read from {receipts_dir}"
    click.echo(summary)
    if folder is not None and folder.problems:
        click.echo(
            f"{len(folder.problems)} problem(s) with the receipts in {receipts_dir}", err=True
        )
        sys.exit(1)


@cli.command()
@click.option(
    "--metrics-bind",
    default=None,
    metavar="HOST:PORT",
    help="Serve this worker's Prometheus metrics here (for workers on other machines).",
)
@with_appcontext
def worker(metrics_bind: str | None) -> None:
    """Run a remediation worker until SIGTERM or SIGINT (run as many as you like, anywhere)."""
    import signal
    import threading

    from flask import current_app
    from prometheus_client import start_http_server

    from agegate import metrics
    from agegate.remediation.setup import make_worker

    if metrics_bind:
        host, _, port = metrics_bind.rpartition(":")
        if not port.isdigit():
            raise click.BadParameter("expected HOST:PORT", param_hint="--metrics-bind")
        start_http_server(int(port), host or "127.0.0.1", metrics.registry(db.engine))

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    engine_worker = make_worker(current_app._get_current_object())  # type: ignore[attr-defined]
    log = logs.get_logger("agegate.worker")
    lease = engine_worker.lease.total_seconds()
    log.info("worker.started", owner=engine_worker.owner, lease_seconds=lease)
    engine_worker.run_forever(stop)
    log.info("worker.stopped", owner=engine_worker.owner)


@cli.group()
def receipts() -> None:
    """Deletion receipts."""


@receipts.command("verify")
@click.argument("receipt_file", type=click.File("rb"))
@click.option(
    "--jwks",
    "jwks_source",
    required=True,
    help="A JWKS file or URL (e.g. /v1/receipts/public-key).",
)
def receipts_verify(receipt_file: Any, jwks_source: str) -> None:
    """Verify a receipt offline against a published key set; exit 1 if it does not hold."""
    import json
    import urllib.request

    from agegate.remediation.receipts import verify

    if jwks_source.startswith(("http://", "https://")):
        with urllib.request.urlopen(jwks_source, timeout=10) as response:  # noqa: S310 (operator-given)
            jwks = json.load(response)
    else:
        with open(jwks_source, "rb") as fh:
            jwks = json.load(fh)
    document = json.load(receipt_file)
    if not verify(document, jwks):
        click.echo("receipt signature does NOT verify", err=True)
        sys.exit(1)
    receipt = document["receipt"]
    click.echo(f"receipt verifies: case {receipt.get('case_id')}, key {document.get('kid')}")


@receipts.command("new-key")
def receipts_new_key() -> None:
    """Print a new Ed25519 signing key (PEM, PKCS#8) for AGEGATE_RECEIPT_SIGNING_KEY."""
    from agegate.remediation.receipts import new_key_pem

    click.echo(new_key_pem().decode(), nl=False)


@cli.group()
def demo() -> None:
    """The demo platform the embedded default purges."""


@demo.command("seed")
def demo_seed() -> None:
    """(Re)create the demo platform: a SQLite database and a media folder under var/demo."""
    from agegate import demo as demo_platform

    settings = load_settings()
    path = demo_platform.seed(settings.var_dir)
    click.echo(f"demo platform ready: {', '.join(demo_platform.ACCOUNTS)}")
    click.echo(f"targets file: {path} (the embedded default uses it; restart `agegate serve`)")


cli.add_command(jurisdictions_commands.jurisdictions)
cli.add_command(targets_commands.targets)
cli.add_command(remediation_commands.cases)


def main() -> None:
    """Console entry point: domain and settings errors become one clear line and exit 2."""
    # The worker is a service and logs what it does; a one-off command keeps its terminal for
    # its own output and logs only warnings, unless AGEGATE_LOG_LEVEL says otherwise.
    service = sys.argv[1:2] == ["worker"]
    level = os.environ.get("AGEGATE_LOG_LEVEL", "INFO" if service else "WARNING").upper()
    library = os.environ.get("AGEGATE_LIBRARY_LOG_LEVEL", "WARNING").upper()
    # An unknown level is reported by the settings check; logging starts at INFO meanwhile.
    levels = {"DEBUG", "INFO", "WARNING", "ERROR"}
    logs.configure(
        level if level in levels else "INFO",
        library_level=library if library in levels else "WARNING",
    )
    try:
        exit_code = cli.main(
            obj=ScriptInfo(create_app=_app_with_existing_state, set_debug_flag=False),
            standalone_mode=False,
        )
    except click.exceptions.Abort:
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except SettingsError as exc:
        click.echo(f"agegate: {exc}", err=True)
        sys.exit(2)
    except AgegateError as exc:
        click.echo(f"agegate: {exc.detail}", err=True)
        sys.exit(2)
    sys.exit(exit_code if isinstance(exit_code, int) else 0)
