"""Production mode, end to end: agegate on PostgreSQL and Redis under gunicorn with several
workers and two `agegate worker` processes, purging a PostgreSQL + files platform, driven
through HTTP only the way its three clients use it, then a restore drill.

    .venv/bin/python -m tests.e2e.production [--database-url URL] [--redis-url URL]

It creates two fresh databases on the PostgreSQL server (AGEGATE_E2E_DATABASE_URL, default
the local `postgres` user) and drops them at the end, and empties the Redis database
(AGEGATE_E2E_REDIS_URL, default db 12) before and after. It prints each check as it passes
and exits 1 with what did not match, after stopping every process it started.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import time
import traceback
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.e2e import observability
from tests.e2e.clients import BYSTANDERS, WEB_WORKERS, Scenario
from tests.e2e.platform_data import ACCOUNTS, Platform
from tests.e2e.stack import (
    AGEGATE,
    Mismatch,
    Process,
    Services,
    expect,
    free_port,
    ok,
    scratch_database,
    scratch_redis,
    sigterm_interrupts,
    step,
    unique,
    wait_for,
)
from tests.e2e.stack import environ as make_environ

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/12"


def provision(
    stack: ExitStack, args: argparse.Namespace, workdir: Path
) -> tuple[Services, Platform]:
    """Fresh databases, the seeded platform, and the deployment's settings."""
    step("set-up: fresh databases, the platform, settings")
    scratch_redis(stack, args.redis_url)
    name = unique("agegate_e2e")
    database_url = scratch_database(stack, args.database_url, name)
    platform_url = scratch_database(stack, args.database_url, f"{name}_platform")
    media = workdir / "media"
    media.mkdir()
    platform = Platform(platform_url, media)
    stack.callback(platform.close)
    targets_file = workdir / "targets.yaml"
    platform.seed(targets_file)
    ok(f"databases {name} and {name}_platform; platform seeded: {', '.join(ACCOUNTS)}")

    port = free_port()
    metrics_dir = workdir / "metrics"
    metrics_dir.mkdir()
    services = Services(
        make_environ(
            AGEGATE_DATABASE_URL=database_url,
            AGEGATE_REDIS_URL=args.redis_url,
            AGEGATE_SECRET_KEY=secrets.token_urlsafe(32),
            AGEGATE_TARGETS_FILE=str(targets_file),
            AGEGATE_VAR_DIR=str(workdir / "var"),
            AGEGATE_PURGE_BATCH_SIZE="4",  # several batches per target
            AGEGATE_WEB_WORKERS=str(WEB_WORKERS),
            AGEGATE_BIND=f"127.0.0.1:{port}",
            # One metrics directory for gunicorn and the workers: /metrics shows them all.
            PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
            PLATFORM_DATABASE_URL=platform_url,
        ),
        logs=workdir,
        base_url=f"http://127.0.0.1:{port}",
    )
    services.env["AGEGATE_RECEIPT_SIGNING_KEY"] = services.cli("receipts", "new-key").stdout
    return services, platform


def deploy(stack: ExitStack, services: Services) -> None:
    """The runbook's order: migrations, then web, then workers."""
    step("deploy: migrations, then web, then workers")
    expect("up to date" in services.cli("db", "upgrade").stdout, "agegate db upgrade")
    ok("`agegate db upgrade`")
    checked = services.cli("targets", "check").stdout
    expect(checked.split() == ["platform-db", "sql", "ok", "media", "files", "ok"], checked)
    ok("`agegate targets check`: platform-db sql ok, media files ok")
    gunicorn = [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.conf.py", "wsgi:app"]
    services.start(stack, "gunicorn", gunicorn)

    def ready() -> bool:
        services.check_alive()
        try:
            return services.http("GET", "/readyz")[0] == 200
        except OSError:
            return False

    wait_for("gunicorn to answer /readyz", ready, timeout=30, interval=0.2)
    ok(f"gunicorn -c config/gunicorn.conf.py wsgi:app ({WEB_WORKERS} sync workers) is ready")
    workers = [services.start(stack, f"worker-{n}", [*AGEGATE, "worker"]) for n in (1, 2)]
    for worker in workers:

        def started(w: Process = worker) -> bool:
            services.check_alive()
            return '"worker.started"' in w.tail()

        wait_for(f"{worker.name} to start", started, timeout=30)
    ok("two `agegate worker` processes running")


def keys_for(services: Services) -> dict[str, str]:
    scopes = {
        "legal": ["jurisdictions:read", "jurisdictions:write", "legal-holds:write"],
        "signup": ["age-checks:write"],
        "ts": ["flags:write", "cases:read", "cases:write"],
    }
    keys = {}
    for name, granted in scopes.items():
        args = ["keys", "create", "--name", f"e2e-{name}"]
        for scope in granted:
            args += ["--scope", scope]
        keys[name] = services.cli(*args).stdout.strip().splitlines()[-1]
    ok("`agegate keys create` for legal, the signup flow, trust and safety")
    return keys


def run(args: argparse.Namespace) -> None:
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="agegate-e2e-")))
        services, platform = provision(stack, args, workdir)
        try:
            deploy(stack, services)
            scenario = Scenario(services, platform, keys_for(services))
            backup = platform.snapshot("e2e-child-1")
            bystanders = {account: platform.snapshot(account) for account in BYSTANDERS}
            since = datetime.now(UTC) - timedelta(seconds=1)
            step("operations")
            scenario.health()
            step("legal")
            scenario.legal_edits_a_rule()
            scenario.legal_imports()
            step("signup flow")
            scenario.signup_checks_ages()
            step("trust and safety")
            cases = scenario.trust_and_safety_flags()
            step("receipts, the platform, the audit log")
            scenario.receipts_verify(cases, workdir)
            scenario.platform_state(bystanders)
            scenario.audit_intact()
            step("restore drill")
            scenario.restore_drill(since, backup, cases)
            scenario.platform_state(bystanders)
            scenario.audit_intact()
            step("metrics and logs")
            observability.metrics_add_up(
                services, scenario.completed_cases(), neutral_retries=2 * WEB_WORKERS
            )
            observability.logs_are_clean(services, scenario.secrets())
            services.check_alive()
        except Exception:
            for process in services.processes:
                print(f"-- last lines of {process.name}:\n{process.tail()}", file=sys.stderr)
            raise
        step("clean-up: stopping processes, dropping databases")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url",
        default=os.environ.get("AGEGATE_E2E_DATABASE_URL", DEFAULT_DATABASE_URL),
        help="a PostgreSQL server URL (a database there to connect to for CREATE DATABASE)",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("AGEGATE_E2E_REDIS_URL", DEFAULT_REDIS_URL),
        help="a Redis database of the script's own: it is emptied",
    )
    args = parser.parse_args()
    sigterm_interrupts()
    started = time.monotonic()
    try:
        run(args)
    except Mismatch as exc:
        print(f"e2e: FAILED: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("e2e: interrupted; processes stopped, databases dropped", file=sys.stderr)
        sys.exit(130)
    except Exception:  # a bug here, or an answer of an unexpected shape: say where
        traceback.print_exc()
        print("e2e: FAILED: an unexpected error (above)", file=sys.stderr)
        sys.exit(1)
    print(f"e2e: every check passed in {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    main()
