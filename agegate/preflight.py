"""What is checked before the service listens: every configuration problem, reported at once.

`agegate serve` and `gunicorn -c config/gunicorn.conf.py` run these checks in gunicorn's
master before it opens its socket (agegate/gunicorn_conf.py, on_starting), so a missing
signing key or a broken targets file stops the start with a list of problems instead of
failing in each worker after "Listening". A database server that does not answer is not a
configuration problem (it may be restarting): the service starts and /readyz says so.
"""

from __future__ import annotations

import re

from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from agegate import migrations
from agegate.db import make_engine
from agegate.settings import Settings, SettingsError

_MISSING = re.compile(r'(database|role) "([^"]*)" does not exist')


def problems(settings: Settings) -> list[str]:
    """Every problem that would stop the service, as lines that name the setting."""
    found = database_problems(settings)
    found += _remediation_problems(settings)
    return found


def database_problems(settings: Settings) -> list[str]:
    """A server database that does not exist, refuses the user, or is behind the code's
    schema; never the password. The embedded database makes itself."""
    if settings.embedded:
        return []
    url = make_url(settings.database_url)
    where = f"{url.host or 'localhost'}:{url.port or 5432}"
    engine = make_engine(settings.database_url, 1)
    try:
        try:
            with engine.connect():
                pass
        except OperationalError as exc:
            text = str(exc.orig)
            missing = _MISSING.search(text)
            if missing and missing.group(1) == "database":
                return [
                    f"AGEGATE_DATABASE_URL: the database {missing.group(2)!r} does not exist on "
                    f"{where}: create it, then run `agegate db upgrade`"
                ]
            if missing or "authentication failed" in text:
                return [
                    f"AGEGATE_DATABASE_URL: {where} refused the user {url.username!r}: check "
                    "the user name and the password"
                ]
            return []  # not answering: an outage, which /readyz reports
        if migrations.pending(engine):
            return ["AGEGATE_DATABASE_URL: the schema is not up to date: run `agegate db upgrade`"]
        return []
    finally:
        engine.dispose()


def _remediation_problems(settings: Settings) -> list[str]:
    from agegate.remediation import startup

    found = []
    try:
        startup.signer_of(settings)
    except SettingsError as exc:
        found += exc.problems
    try:
        targets, _ = startup.targets_of(settings)
    except SettingsError as exc:
        found += exc.problems
    else:
        for target in targets:
            close = getattr(target, "close", None)
            if close is not None:
                close()
    return found


def check(settings: Settings) -> None:
    """Raise SettingsError listing every problem, if there is any."""
    if found := problems(settings):
        raise SettingsError(found)
