"""The migrations build exactly the schema the models describe, and run down and up again."""

from __future__ import annotations

from alembic import command
from flask import Flask

from agegate.migrations import alembic_config


def test_models_and_migrations_agree(app: Flask) -> None:
    command.check(alembic_config(app.extensions["agegate.engine"]))


def test_downgrade_to_base_and_upgrade_again(app: Flask) -> None:
    config = alembic_config(app.extensions["agegate.engine"])
    command.downgrade(config, "base")
    command.upgrade(config, "head")
    command.check(config)
