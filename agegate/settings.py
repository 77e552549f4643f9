"""Settings: defaults from agegate/data/defaults.toml, then AGEGATE_* environment, then
overrides.

Every value is validated once, at start-up; a bad one stops the process with a message that
names the variable and says what is wrong with it.
"""

from __future__ import annotations

import os
import secrets
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

ENV_PREFIX = "AGEGATE_"
# defaults.toml and the shipped jurisdictions.csv, installed with the package.
_PACKAGE_DATA = Path(__file__).resolve().parent / "data"


class SettingsError(Exception):
    """One or more settings are invalid; the message lists every problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))
        self.problems = problems


@dataclass(frozen=True)
class Settings:
    database_url: str
    redis_url: str | None
    var_dir: Path
    secret_key: bytes
    db_pool_size: int
    redis_pool_size: int
    max_request_bytes: int
    log_level: str
    library_log_level: str
    seed_jurisdictions: bool
    lockout_window_seconds: int
    rate_limit_per_second: int
    grace_suspected_seconds: int
    grace_confirmed_seconds: int
    lease_seconds: int
    purge_batch_size: int
    max_attempts: int
    retry_backoff_cap_seconds: int
    targets_file: Path | None
    target_plugins: tuple[str, ...]
    receipt_signing_key: str
    require_country: bool
    auth_failures_per_second: int
    trusted_proxies: int

    @property
    def embedded(self) -> bool:
        """True when agegate runs on its embedded SQLite database."""
        return self.database_url.startswith("sqlite")


def config_dir() -> Path:
    """The folder holding defaults.toml and the shipped jurisdictions.csv: the package's own,
    unless AGEGATE_CONFIG_DIR names another."""
    configured = os.environ.get(ENV_PREFIX + "CONFIG_DIR")
    return Path(configured) if configured else _PACKAGE_DATA


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    existing_state: bool = False,
) -> Settings:
    """Build validated settings; raise SettingsError listing every bad value.

    The embedded default makes its state (database, keys) on first use. With
    `existing_state`, for one-off commands, it must be there already: a command run in the
    wrong folder says where it looked instead of making up a fresh, empty service."""
    environ = os.environ if environ is None else environ
    raw = _read_defaults()
    for field in fields(Settings):
        env_name = ENV_PREFIX + field.name.upper()
        if env_name in environ:
            raw[field.name] = environ[env_name]
    raw.update(overrides or {})

    problems: list[str] = []
    values: dict[str, Any] = {}
    for name, parse in _PARSERS.items():
        try:
            values[name] = parse(raw.get(name))
        except ValueError as exc:
            problems.append(f"{ENV_PREFIX}{name.upper()}: {exc}")
    if problems:
        raise SettingsError(problems)

    var_dir: Path = values["var_dir"]
    if not values["database_url"]:
        values["database_url"] = f"sqlite:///{(var_dir / 'agegate.db').resolve()}"
    if existing_state:
        _require_existing_state(values["database_url"], var_dir)
    if not values["secret_key"]:
        if not values["database_url"].startswith("sqlite"):
            raise SettingsError(
                [f"{ENV_PREFIX}SECRET_KEY: required when the database is not the embedded SQLite"]
            )
        values["secret_key"] = _embedded_secret(var_dir)
    return Settings(**values)


def _require_existing_state(database_url: str, var_dir: Path) -> None:
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database:
        return  # a server database: it exists or the connection says why not
    database = Path(url.database).resolve()
    if database.is_file():
        return
    raise SettingsError(
        [
            f"{ENV_PREFIX}VAR_DIR: no agegate state here: {database} does not exist. Run the "
            f"command in the folder where `agegate serve` runs, or set {ENV_PREFIX}VAR_DIR to "
            f"its state folder (now {var_dir.resolve()}); `agegate serve` or `agegate db "
            "upgrade` makes a new one."
        ]
    )


def _read_defaults() -> dict[str, Any]:
    path = config_dir() / "defaults.toml"
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise SettingsError(
            [f"{path}: defaults file not found (AGEGATE_CONFIG_DIR names a folder without one)"]
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError([f"{path}: {exc}"]) from None


def _embedded_secret(var_dir: Path) -> bytes:
    """Read, or create on first start, the embedded default's secret key file."""
    path = var_dir / "secret.key"
    if not path.exists():
        var_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48))
    return path.read_text().strip().encode()


def _database_url(value: Any) -> str:
    text = str(value or "").strip()
    if not text:
        return ""
    try:
        url = make_url(text)
    except ArgumentError:
        raise ValueError("not a database URL (expected postgresql://… or sqlite:///…)") from None
    if url.get_backend_name() not in ("postgresql", "sqlite"):
        raise ValueError(
            f"unsupported database {url.get_backend_name()!r}: use postgresql or sqlite"
        )
    if url.get_backend_name() == "postgresql":
        # psycopg 3 is the driver we ship; plain postgresql:// would ask for psycopg2.
        url = url.set(drivername="postgresql+psycopg")
    return url.render_as_string(hide_password=False)


def _redis_url(value: Any) -> str | None:
    text = str(value or "").strip()
    if not text:
        return None
    if not text.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("not a Redis URL (expected redis://host:port/db)")
    return text


def _secret_key(value: Any) -> bytes:
    text = str(value or "").strip()
    if text and len(text) < 32:
        raise ValueError("too short: use at least 32 random characters")
    return text.encode()


def _int_between(low: int, high: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ValueError(f"not a whole number: {value!r}") from None
        if not low <= number <= high:
            raise ValueError(f"{number} is outside {low}..{high}")
        return number

    return parse


def _log_level(value: Any) -> str:
    level = str(value or "").upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError(f"{value!r} is not one of DEBUG, INFO, WARNING, ERROR")
    return level


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{value!r} is not a boolean (true or false)")


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(value: Any) -> int:
    """`24h`, `90m`, `3d`, `45s` or a number of seconds → seconds (at least 1)."""
    text = str(value).strip().lower()
    unit = _DURATION_UNITS.get(text[-1:])
    number = text[:-1] if unit else text
    try:
        seconds = int(number) * (unit or 1)
    except ValueError:
        raise ValueError(f"{value!r} is not a duration (e.g. 24h, 90m, 3600s)") from None
    if seconds < 1:
        raise ValueError(f"{value!r} must be at least one second")
    return seconds


def _duration_or_zero(value: Any) -> int:
    return 0 if str(value).strip() in ("0", "0s", "") else _duration(value)


def _optional_path(value: Any) -> Path | None:
    text = str(value or "").strip()
    if not text:
        return None
    path = Path(text)
    if not path.is_file():
        raise ValueError(f"no such file: {text}")
    return path


_PARSERS: dict[str, Callable[[Any], Any]] = {
    "database_url": _database_url,
    "redis_url": _redis_url,
    "var_dir": lambda value: Path(str(value or "var")),
    "secret_key": _secret_key,
    "db_pool_size": _int_between(1, 200),
    "redis_pool_size": _int_between(1, 1000),
    "max_request_bytes": _int_between(1024, 100 * 1024 * 1024),
    "log_level": _log_level,
    "library_log_level": _log_level,
    "seed_jurisdictions": _bool,
    "lockout_window_seconds": _duration,
    "rate_limit_per_second": _int_between(1, 1_000_000),
    "grace_suspected_seconds": _duration_or_zero,
    "grace_confirmed_seconds": _duration_or_zero,
    "lease_seconds": _duration,
    "purge_batch_size": _int_between(1, 100_000),
    "max_attempts": _int_between(1, 100),
    "retry_backoff_cap_seconds": _duration,
    "targets_file": _optional_path,
    "target_plugins": lambda value: tuple(
        m.strip() for m in str(value or "").split(",") if m.strip()
    ),
    "receipt_signing_key": lambda value: str(value or "").strip(),
    "require_country": _bool,
    "auth_failures_per_second": _int_between(1, 1_000_000),
    "trusted_proxies": _int_between(0, 10),
}
