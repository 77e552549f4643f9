"""Unbound service objects, bound to an app by init_app: the database and the key-value store.

One transaction per request, owned by the edge: the first use of ``db.session`` in a request
opens it, a response below 400 commits it, anything else rolls it back.
"""

from __future__ import annotations

from flask import Flask, Response, current_app, g
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from agegate.db import make_engine
from agegate.settings import Settings
from agegate.store import RedisStore, SQLStore, Store

_SESSION_KEY = "_agegate_session"


class Database:
    def init_app(self, app: Flask, settings: Settings) -> None:
        engine = make_engine(settings.database_url, settings.db_pool_size)
        app.extensions["agegate.engine"] = engine
        app.extensions["agegate.sessionmaker"] = sessionmaker(engine, expire_on_commit=False)
        app.after_request(_commit_on_success)
        app.teardown_appcontext(_close_session)

    @property
    def engine(self) -> Engine:
        engine: Engine = current_app.extensions["agegate.engine"]
        return engine

    @property
    def session(self) -> Session:
        """The current request's (or app context's) session, opened on first use."""
        session: Session | None = g.get(_SESSION_KEY)
        if session is None:
            session = self.new_session()
            setattr(g, _SESSION_KEY, session)
        return session

    def new_session(self) -> Session:
        """A session the caller owns (CLI commands, workers)."""
        factory: sessionmaker[Session] = current_app.extensions["agegate.sessionmaker"]
        return factory()


def _commit_on_success(response: Response) -> Response:
    session: Session | None = g.get(_SESSION_KEY)
    if session is not None and response.status_code < 400:
        session.commit()
    return response


def _close_session(_exc: BaseException | None) -> None:
    session: Session | None = g.pop(_SESSION_KEY, None)
    if session is not None:
        session.close()


class StoreHolder:
    def init_app(self, app: Flask, settings: Settings, engine: Engine) -> None:
        store: Store
        if settings.redis_url:
            store = RedisStore(settings.redis_url, settings.redis_pool_size)
        else:
            store = SQLStore(engine)
        app.extensions["agegate.store"] = store

    def current_for(self, app: Flask) -> Store:
        store: Store = app.extensions["agegate.store"]
        return store

    @property
    def current(self) -> Store:
        store: Store = current_app.extensions["agegate.store"]
        return store


db = Database()
store = StoreHolder()
