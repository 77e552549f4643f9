"""The embedded default purges the demo platform: one account goes, the others stay."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask

from agegate import demo
from agegate.remediation.setup import make_worker


def rows(database: Path, account: str) -> int:
    conn = sqlite3.connect(database)
    try:
        return int(
            conn.execute(
                "SELECT count(*) FROM generations WHERE account_id = ?", (account,)
            ).fetchone()[0]
        )
    finally:
        conn.close()


def test_flagging_a_demo_account_purges_it_and_nothing_else(
    app_factory: Callable[..., Flask],
    settings_overrides: dict[str, Any],
    make_key: Callable[..., dict[str, str]],
) -> None:
    var_dir = Path(settings_overrides["var_dir"])
    demo.seed(var_dir)
    app = app_factory(targets_file=str(demo.targets_file(var_dir)))
    media = var_dir / "demo" / "media"
    before = {
        p.relative_to(media): p.read_bytes()
        for p in media.rglob("*")
        if p.is_file() and "demo-child-1" not in p.parts
    }
    headers = make_key("flags:write", "cases:read")
    client = app.test_client()
    case = client.post(
        "/v1/accounts/demo-child-1/flags",
        json={"reason": "parental_request", "confidence": "confirmed"},
        headers=headers,
    ).get_json()["case"]
    worker = make_worker(app)
    while worker.run_once():
        pass
    done = client.get(f"/v1/cases/{case['id']}", headers=headers).get_json()
    assert done["state"] == "completed"
    assert {t["name"]: t["purged"] for t in done["targets"]} == {"platform-db": 30, "media": 12}
    database = var_dir / "demo" / "platform.db"
    assert rows(database, "demo-child-1") == 0
    assert {a: rows(database, a) for a in ("demo-teen-2", "demo-adult-3", "demo-adult-4")} == {
        "demo-teen-2": 4,
        "demo-adult-3": 5,
        "demo-adult-4": 3,
    }
    after = {p.relative_to(media): p.read_bytes() for p in media.rglob("*") if p.is_file()}
    assert after == before
