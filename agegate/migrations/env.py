"""Alembic environment: the engine comes from agegate, never from an ini file."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine

import agegate.models  # noqa: F401  (registers every table on Base.metadata)
from agegate.db import Base

engine: Engine = context.config.attributes["engine"]

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=engine.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
