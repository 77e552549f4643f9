from __future__ import annotations

import stat
from pathlib import Path

import pytest

from agegate.settings import SettingsError, load_settings


def test_embedded_default_needs_no_configuration(tmp_path: Path) -> None:
    settings = load_settings({"var_dir": str(tmp_path / "var")}, environ={})

    assert settings.embedded
    assert settings.database_url == f"sqlite:///{(tmp_path / 'var' / 'agegate.db').resolve()}"
    assert settings.redis_url is None
    secret = tmp_path / "var" / "secret.key"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    # The generated secret is stable across restarts.
    again = load_settings({"var_dir": str(tmp_path / "var")}, environ={})
    assert again.secret_key == settings.secret_key and len(settings.secret_key) >= 32


def test_environment_overrides_defaults(tmp_path: Path) -> None:
    environ = {
        "AGEGATE_DATABASE_URL": "postgresql://postgres@db.invalid:5432/agegate",
        "AGEGATE_REDIS_URL": "redis://cache.invalid:6379/0",
        "AGEGATE_SECRET_KEY": "x" * 40,
        "AGEGATE_DB_POOL_SIZE": "7",
    }
    settings = load_settings(environ=environ)

    assert not settings.embedded
    # psycopg 3 is the driver, whatever scheme the operator wrote.
    assert settings.database_url == "postgresql+psycopg://postgres@db.invalid:5432/agegate"
    assert settings.redis_url == "redis://cache.invalid:6379/0"
    assert settings.db_pool_size == 7


def test_every_bad_value_is_reported_at_once() -> None:
    environ = {
        "AGEGATE_DATABASE_URL": "mysql://root@db.invalid/agegate",
        "AGEGATE_REDIS_URL": "cache.invalid:6379",
        "AGEGATE_DB_POOL_SIZE": "lots",
        "AGEGATE_MAX_REQUEST_BYTES": "10",
        "AGEGATE_LOG_LEVEL": "chatty",
        "AGEGATE_SECRET_KEY": "tiny-s3cr3t",
    }
    with pytest.raises(SettingsError) as caught:
        load_settings(environ=environ)

    text = str(caught.value)
    for name in (
        "DATABASE_URL",
        "REDIS_URL",
        "DB_POOL_SIZE",
        "MAX_REQUEST_BYTES",
        "LOG_LEVEL",
        "SECRET_KEY",
    ):
        assert f"AGEGATE_{name}:" in text
    assert "s3cr3t" not in text  # a secret is never echoed, not even a bad one


def test_secret_key_is_required_outside_the_embedded_default() -> None:
    with pytest.raises(SettingsError, match="AGEGATE_SECRET_KEY: required"):
        load_settings(environ={"AGEGATE_DATABASE_URL": "postgresql://postgres@db.invalid/agegate"})


def test_cli_refuses_to_start_with_a_clear_message(tmp_path: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", "from agegate.cli import main; main()", "db", "upgrade"],
        env={"AGEGATE_DATABASE_URL": "oracle://x", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 2
    assert "AGEGATE_DATABASE_URL: unsupported database 'oracle'" in result.stderr
