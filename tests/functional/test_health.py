from __future__ import annotations

from collections.abc import Callable

from flask import Flask
from flask.testing import FlaskClient


def test_healthz_and_readyz(client: FlaskClient) -> None:
    assert client.get("/healthz").get_json() == {"status": "alive"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert set(ready.get_json()["checks"].values()) == {"ok"}


def test_readyz_names_redis_when_it_is_down(app_factory: Callable[..., Flask]) -> None:
    app = app_factory(redis_url="redis://127.0.0.1:9/0")
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    body = response.get_json(force=True)
    assert body["code"] == "not_ready"
    assert body["checks"] == {"database": "ok", "redis": "unreachable"}
    assert "redis" in body["detail"]
    assert response.headers["Retry-After"]


def test_readyz_names_the_database_when_it_is_down(app_factory: Callable[..., Flask]) -> None:
    app = app_factory(database_url="postgresql://postgres@127.0.0.1:9/agegate?connect_timeout=2")
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    body = response.get_json(force=True)
    assert body["checks"]["database"] == "unreachable"
    assert "database" in body["detail"]
    assert "127.0.0.1:9" not in response.get_data(as_text=True)
