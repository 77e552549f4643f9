"""The baseline for benchmarks: a bare Flask JSON endpoint, served by the same gunicorn config."""

from __future__ import annotations

from typing import Any

from flask import Flask, request

app = Flask(__name__)


@app.post("/bare")
def bare() -> dict[str, Any]:
    body = request.get_json()
    return {"outcome": "allowed", "echo_keys": sorted(body)}


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "alive"}
