"""The agegate command as an operator uses it."""

from __future__ import annotations

from flask import Flask
from sqlalchemy import text

from agegate.cli import cli
from agegate.extensions import db


def test_keys_create_prints_the_key_last_and_it_works(app: Flask) -> None:
    runner = app.test_cli_runner()
    result = runner.invoke(
        cli,
        [
            "keys",
            "create",
            "--name",
            "legal",
            "--scope",
            "jurisdictions:read",
            "--scope",
            "jurisdictions:write",
        ],
    )
    assert result.exit_code == 0, result.output
    key = result.output.strip().splitlines()[-1]
    assert key.startswith("agk_") and " " not in key

    listed = runner.invoke(cli, ["keys", "list"])
    assert "legal\tlive\tjurisdictions:read jurisdictions:write" in listed.output
    assert key not in listed.output

    revoked = runner.invoke(cli, ["keys", "revoke", "legal"])
    assert revoked.exit_code == 0
    assert "legal\trevoked" in runner.invoke(cli, ["keys", "list"]).output
    # Nothing live has that name now; revoking again says so.
    again = runner.invoke(cli, ["keys", "revoke", "legal"])
    assert again.exit_code != 0


def test_keys_create_rejects_unknown_scopes_and_duplicate_names(app: Flask) -> None:
    runner = app.test_cli_runner()
    bad = runner.invoke(cli, ["keys", "create", "--name", "x", "--scope", "everything"])
    assert bad.exit_code == 2 and "everything" in bad.output
    assert (
        runner.invoke(cli, ["keys", "create", "--name", "x", "--scope", "cases:read"]).exit_code
        == 0
    )
    duplicate = runner.invoke(cli, ["keys", "create", "--name", "x", "--scope", "cases:read"])
    assert duplicate.exit_code != 0


def test_keys_create_replace_revokes_the_live_key_of_that_name(app: Flask) -> None:
    runner = app.test_cli_runner()
    create = ["keys", "create", "--name", "legal", "--scope", "jurisdictions:read", "--replace"]
    first = runner.invoke(cli, create)
    assert first.exit_code == 0, first.output
    assert "revoked" not in first.output  # nothing to replace yet
    second = runner.invoke(cli, create)
    assert second.exit_code == 0, second.output
    assert "revoked the earlier key 'legal'" in second.output
    old, new = (r.output.strip().splitlines()[-1] for r in (first, second))
    client = app.test_client()

    def status(key: str) -> int:
        return client.get(
            "/v1/jurisdictions/DE", headers={"Authorization": f"Bearer {key}"}
        ).status_code

    assert (status(old), status(new)) == (401, 200)
    listed = runner.invoke(cli, ["keys", "list"]).output.splitlines()
    assert [line.split("\t")[1].split()[0] for line in listed] == ["revoked", "live"]
    with app.app_context(), db.new_session() as s:
        events = s.scalars(
            text("SELECT event FROM audit_events WHERE subject_id = 'legal' ORDER BY seq")
        ).all()
    assert events == ["api_key.created", "api_key.revoked", "api_key.created"]


def test_audit_verify_reports_intact_then_broken(app: Flask) -> None:
    runner = app.test_cli_runner()
    before = int(runner.invoke(cli, ["audit", "verify"]).output.split("intact: ")[1].split()[0])
    runner.invoke(cli, ["keys", "create", "--name", "a", "--scope", "cases:read"])
    runner.invoke(cli, ["keys", "revoke", "a"])
    ok = runner.invoke(cli, ["audit", "verify"])
    assert ok.exit_code == 0
    assert f"intact: {before + 2} events" in ok.output

    with app.app_context(), db.new_session() as s:
        postgres = s.get_bind().dialect.name == "postgresql"
        if postgres:
            s.execute(text("ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only"))
        else:  # each SQLite test has a database file of its own
            s.execute(text("DROP TRIGGER audit_events_no_update"))
        s.execute(text("UPDATE audit_events SET subject_id = 'b' WHERE seq = 1"))
        s.commit()
        try:
            broken = runner.invoke(cli, ["audit", "verify"])
        finally:
            if postgres:  # the PostgreSQL schema is shared by the whole run
                s.execute(text("ALTER TABLE audit_events ENABLE TRIGGER audit_events_append_only"))
                s.commit()
    assert broken.exit_code == 1
    assert "BROKEN at event 1" in broken.output
