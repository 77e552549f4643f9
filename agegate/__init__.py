"""agegate: age gating and child-data remediation for an AI video-generation platform."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from flask import Flask
from sqlalchemy.exc import OperationalError
from werkzeug.middleware.proxy_fix import ProxyFix

from agegate import logs

log = logs.get_logger(__name__)

try:
    __version__ = version("agegate")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+source"


class _Flask(Flask):
    """Flask, deciding once per function whether it must run as a coroutine: Flask asks on
    every call of every hook and view (six times per age check), by inspecting its code."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._synchronous: dict[Callable[..., Any], Callable[..., Any]] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        synchronous = self._synchronous.get(func)
        if synchronous is None:
            synchronous = self._synchronous[func] = super().ensure_sync(func)
        return synchronous


def create_app(
    overrides: Mapping[str, Any] | None = None, *, existing_state: bool = False
) -> Flask:
    """Build the WSGI application; settings come from defaults, AGEGATE_* and `overrides`.
    With `existing_state` (one-off commands) the embedded default's state must exist."""
    from agegate import edge, health, migrations, preflight
    from agegate.age_checks import views as age_check_views
    from agegate.age_checks.lockouts import Lockouts
    from agegate.age_checks.recorder import CheckRecorder
    from agegate.api import create_api
    from agegate.api_keys.ratelimit import RateLimiter
    from agegate.extensions import db, store
    from agegate.jurisdictions import cache as jurisdictions_cache
    from agegate.jurisdictions import page as jurisdiction_page
    from agegate.jurisdictions import views as jurisdiction_views
    from agegate.jurisdictions.seed import seed_shipped_table
    from agegate.remediation import setup as remediation_setup
    from agegate.remediation import views as remediation_views
    from agegate.settings import SettingsError, load_settings

    settings = load_settings(overrides, existing_state=existing_state)
    app = _Flask(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    app.extensions["agegate.settings"] = settings
    edge.init_app(app)

    db.init_app(app, settings)
    if settings.embedded:
        # The embedded default sets itself up: a fresh machine needs no separate step.
        settings.var_dir.mkdir(parents=True, exist_ok=True)
        migrations.upgrade(app.extensions["agegate.engine"])
    elif problems := preflight.database_problems(settings):
        # A database that does not exist, refuses the user or is behind the code's schema
        # (production migrates as a separate step): serving it would fail later.
        raise SettingsError(problems)
    store.init_app(app, settings, app.extensions["agegate.engine"])

    engine = app.extensions["agegate.engine"]
    jurisdictions_cache.init_app(app, engine, store.current_for(app))
    remediation_setup.init_app(app, settings, __version__)
    app.extensions["agegate.rate_limiter"] = RateLimiter(
        store.current_for(app), settings.rate_limit_per_second
    )
    app.extensions["agegate.auth_failures"] = RateLimiter(
        store.current_for(app), settings.auth_failures_per_second
    )
    if settings.trusted_proxies:
        # remote_addr becomes the address the outermost trusted proxy saw; the rest of
        # X-Forwarded-For is the client's to write, and is not believed.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxies, x_proto=0)  # type: ignore[method-assign]
    app.extensions["agegate.check_recorder"] = CheckRecorder(engine)
    app.extensions["agegate.lockouts"] = Lockouts(
        engine, store.current_for(app), settings.secret_key, settings.lockout_window_seconds
    )
    if settings.seed_jurisdictions:
        with app.app_context():
            try:
                seed_shipped_table()
            except OperationalError:
                log.warning("jurisdictions.seed_deferred", reason="database unreachable")

    api = create_api(app, __version__)
    api.register_blueprint(health.blp)
    api.register_blueprint(jurisdiction_views.blp)
    api.register_blueprint(jurisdiction_page.blp)
    api.register_blueprint(age_check_views.blp)
    api.register_blueprint(remediation_views.blp)
    return app
