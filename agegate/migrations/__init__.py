"""Alembic migrations, run by `agegate db upgrade` (and on start in the embedded default)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", "agegate:migrations")
    # Dated file names that say what they do: 2026_11_29_0001_api_keys_and_audit.py
    config.set_main_option("file_template", "%%(year)d_%%(month).2d_%%(day).2d_%%(rev)s_%%(slug)s")
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database schema to `revision`."""
    command.upgrade(alembic_config(engine), revision)


def pending(engine: Engine) -> bool | None:
    """True when the database is behind the code's newest migration; None if unreachable."""
    heads = set(ScriptDirectory.from_config(alembic_config(engine)).get_heads())
    try:
        with engine.connect() as conn:
            current = set(MigrationContext.configure(conn).get_current_heads())
    except OperationalError:
        return None
    return current != heads
