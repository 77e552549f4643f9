"""Test fixtures: real PostgreSQL and Redis when AGEGATE_TEST_DATABASE_URL / AGEGATE_TEST_REDIS_URL
name them (CI always does), the embedded default (SQLite) otherwise.

The schema is built by running the migrations. Each test starts from empty tables and an
empty Redis database. When a configured server cannot be reached the run errors; it never
skips.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, inspect, make_url, text
from sqlalchemy.orm import Session

from agegate import create_app
from agegate.api_keys import service as api_keys
from agegate.db import make_engine
from agegate.extensions import db
from agegate.migrations import upgrade
from agegate.remediation.receipts import new_key_pem

TEST_SECRET = "test-secret-key-that-is-long-enough-0123456789"
TEST_SIGNING_KEY = new_key_pem().decode()
PG_ENV = "AGEGATE_TEST_DATABASE_URL"
REDIS_ENV = "AGEGATE_TEST_REDIS_URL"


@dataclass
class Backend:
    """Where the tests' data lives and how to empty it between tests."""

    database_url: str
    redis_url: str | None
    template: Path | None = None  # SQLite: a migrated file copied for each test

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith("postgresql")


def _admin_url(url: str) -> str:
    return make_url(url).set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    import os

    pg_url, redis_url = os.environ.get(PG_ENV), os.environ.get(REDIS_ENV)
    if pg_url:
        admin = make_engine(_admin_url(pg_url), 1)
        name = f"agegate_test_{uuid.uuid4().hex[:12]}"
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(_admin_url(pg_url)).set(database=name).render_as_string(hide_password=False)
        engine = make_engine(url, 2)
        upgrade(engine)
        engine.dispose()
        try:
            yield Backend(url, redis_url)
        finally:
            with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
        return
    template = tmp_path_factory.mktemp("template") / "agegate.db"
    engine = make_engine(f"sqlite:///{template}", 1)
    upgrade(engine)
    engine.dispose()
    yield Backend(f"sqlite:///{template}", redis_url, template=template)


@pytest.fixture
def database_url(backend: Backend, tmp_path: Path) -> Iterator[str]:
    if backend.template is not None:
        path = tmp_path / "agegate.db"
        shutil.copy(backend.template, path)
        yield f"sqlite:///{path}"
        return
    yield backend.database_url
    _empty_postgres(backend.database_url)


def _empty_postgres(url: str) -> None:
    engine = make_engine(url, 1)
    try:
        tables = [
            t
            for t in inspect(engine).get_table_names()
            if t not in ("alembic_version", "audit_head")
        ]
        with engine.begin() as conn:
            # The audit log refuses TRUNCATE: between tests it is emptied as a superuser
            # can, with triggers off for this transaction.
            conn.execute(text("SET LOCAL session_replication_role = replica"))
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
            conn.execute(text(f"UPDATE audit_head SET last_seq = 0, last_hash = '{'0' * 64}'"))
    finally:
        engine.dispose()


@pytest.fixture
def redis_url(backend: Backend) -> Iterator[str | None]:
    if backend.redis_url is None:
        yield None
        return
    client = redis.Redis.from_url(backend.redis_url)
    client.flushdb()
    yield backend.redis_url
    client.flushdb()
    client.close()


@pytest.fixture
def settings_overrides(database_url: str, redis_url: str | None, tmp_path: Path) -> dict[str, Any]:
    return {
        "database_url": database_url,
        "redis_url": redis_url or "",
        "secret_key": TEST_SECRET,
        "var_dir": str(tmp_path / "var"),
        "seed_jurisdictions": False,
        "receipt_signing_key": TEST_SIGNING_KEY,
        # The suites send many keyless requests from one address; test_auth.py sets a budget.
        "auth_failures_per_second": 1_000_000,
    }


@pytest.fixture
def app_factory(settings_overrides: dict[str, Any]) -> Iterator[Callable[..., Flask]]:
    """app_factory(redis_url=...) → an app with those settings changed; disposed afterwards."""
    made: list[Flask] = []

    def make(**changes: Any) -> Flask:
        application = create_app({**settings_overrides, **changes})
        application.config["TESTING"] = True
        made.append(application)
        return application

    yield make
    for application in made:
        application.extensions["agegate.check_recorder"].close()  # before the database goes
        for target in application.extensions["agegate.targets"]:
            getattr(target, "close", lambda: None)()
        application.extensions["agegate.store"].close()
        engine: Engine = application.extensions["agegate.engine"]
        engine.dispose()


@pytest.fixture
def app(app_factory: Callable[..., Flask]) -> Flask:
    return app_factory()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def session(app: Flask) -> Iterator[Session]:
    with app.app_context(), db.new_session() as s:
        yield s


@pytest.fixture
def make_key(app: Flask) -> Callable[..., dict[str, str]]:
    """make_key("cases:read", ...) → headers carrying a new key with those scopes."""
    counter = iter(range(10_000))

    def make(*scopes: str) -> dict[str, str]:
        with app.app_context(), db.new_session() as s:
            _, plaintext = api_keys.create_key(
                s, name=f"test-{next(counter)}", scopes=scopes, actor="test"
            )
            s.commit()
        return {"Authorization": f"Bearer {plaintext}"}

    return make
