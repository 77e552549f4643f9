"""The migrations build exactly the schema the models describe, and run down and up again."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from alembic import command
from flask import Flask
from sqlalchemy import make_url, text

from agegate import create_app, migrations
from agegate.db import make_engine
from agegate.migrations import alembic_config
from tests.conftest import Backend


def test_models_and_migrations_agree(app: Flask) -> None:
    command.check(alembic_config(app.extensions["agegate.engine"]))


def test_downgrade_to_base_and_upgrade_again(app: Flask) -> None:
    config = alembic_config(app.extensions["agegate.engine"])
    command.downgrade(config, "base")
    command.upgrade(config, "head")
    command.check(config)


def test_start_refuses_an_old_schema_outside_the_embedded_default(
    backend: Backend, settings_overrides: dict[str, Any], tmp_path: Path
) -> None:
    """Production migrates as a step of its own; the embedded default migrates itself."""
    if not backend.is_postgres:
        fresh = tmp_path / "fresh.db"
        app = create_app({**settings_overrides, "database_url": f"sqlite:///{fresh}"})
        engine = app.extensions["agegate.engine"]
        assert migrations.pending(engine) is False
        engine.dispose()
        return
    admin = make_engine(backend.database_url, 1)
    name = f"agegate_empty_{uuid.uuid4().hex[:8]}"
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    empty = make_url(backend.database_url).set(database=name).render_as_string(hide_password=False)
    try:
        # As a worker would boot: a process of its own, which must refuse to start.
        started = subprocess.run(
            [sys.executable, "-c", "from agegate.cli import main; main()", "keys", "list"],
            env={
                **os.environ,
                "AGEGATE_DATABASE_URL": empty,
                "AGEGATE_SECRET_KEY": settings_overrides["secret_key"],
            },
            capture_output=True,
            text=True,
            check=False,
        )
        assert started.returncode == 2
        assert "the schema is not up to date: run `agegate db upgrade`" in started.stderr
    finally:
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_0009_links_a_flag_to_its_age_check_only_where_the_check_exists(
    app: Flask, make_key: Any
) -> None:
    """Evidence is free text: only a reference naming a real check becomes a link."""
    from agegate.db import utcnow
    from agegate.extensions import db
    from agegate.flags.models import Confidence, Flag, FlagReason
    from agegate.remediation import service
    from tests.functional.test_age_checks import seed_table

    seed_table(app)
    client = app.test_client()
    denied = client.post(
        "/v1/age-checks",
        json={"age": 12, "country": "DE", "account_id": "acct-child"},
        headers=make_key("age-checks:write"),
    ).get_json()
    with app.app_context(), db.new_session() as s:
        for account, evidence in (
            ("acct-a", "age-check:see ticket 12"),
            ("acct-b", f"age-check:{uuid.uuid4()}"),
        ):
            service.flag_account(
                s, account_id=account, reason=FlagReason.OTHER, confidence=Confidence.CONFIRMED,
                evidence=evidence, flagged_by="test", now=utcnow(),
            )  # fmt: skip
        s.commit()
    config = alembic_config(app.extensions["agegate.engine"])
    command.downgrade(config, "0008")
    command.upgrade(config, "head")
    with app.app_context(), db.new_session() as s:
        links = {f.account_id: f.age_check_id for f in s.query(Flag)}
    assert links == {"acct-child": uuid.UUID(denied["id"]), "acct-a": None, "acct-b": None}
