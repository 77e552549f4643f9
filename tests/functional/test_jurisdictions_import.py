"""Atomic import with a per-row report, dry runs, replace, export round trips, the shipped table."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from agegate.jurisdictions import files
from agegate.settings import config_dir

HEADER = "code,minimum_age,effective_from,status,citation,notes,source_url\n"
GOOD = (
    HEADER
    + "default,13,2000-01-01,in_force,Platform floor,,\n"
    + "DE,16,2018-05-25,in_force,GDPR Art. 8(1),,https://law.example/de\n"
    + "ES,14,2018-12-07,in_force,LOPDGDD Art. 7,,\n"
    + 'ES,16,2031-01-01,proposed,"Bill, Art. 1",a proposal,\n'
)


@pytest.fixture
def legal(make_key: Callable[..., dict[str, str]]) -> dict[str, str]:
    return make_key("jurisdictions:read", "jurisdictions:write")


def post_csv(client: FlaskClient, headers: dict[str, str], text: str, query: str = "") -> object:
    return client.post(
        f"/v1/jurisdictions/import?change_reason=test{query}",
        data=text,
        headers={**headers, "Content-Type": "text/csv"},
    )


def test_a_misspelt_dry_run_is_refused_not_taken_for_a_real_import(
    client: FlaskClient, legal: dict[str, str]
) -> None:
    response = post_csv(client, legal, GOOD, "&dryrun=true")
    assert response.status_code == 422
    assert response.get_json()["errors"] == {"_query": ["1 unknown field"]}  # never named
    assert export(client, legal) == HEADER.replace("\n", "") + "\n"  # nothing imported


def export(client: FlaskClient, headers: dict[str, str]) -> str:
    response = client.get("/v1/jurisdictions/export", headers=headers)
    assert response.status_code == 200 and response.mimetype == "text/csv"
    return response.get_data(as_text=True)


def test_dry_run_shows_the_diff_and_changes_nothing(
    client: FlaskClient, legal: dict[str, str]
) -> None:
    response = post_csv(client, legal, GOOD, "&dry_run=true")
    assert response.status_code == 200
    body = response.get_json()
    assert body["dry_run"] is True
    assert [(a["code"], a["minimum_age"], a["before"]) for a in body["added"]] == [
        ("default", 13, None),
        ("DE", 16, None),
        ("ES", 14, None),
        ("ES", 16, None),
    ]
    assert export(client, legal) == HEADER.replace("\n", "") + "\n"


def test_import_then_reimport_is_a_no_op(client: FlaskClient, legal: dict[str, str]) -> None:
    first = post_csv(client, legal, GOOD).get_json()
    assert len(first["added"]) == 4 and first["unchanged"] == 0
    second = post_csv(client, legal, GOOD).get_json()
    assert second["added"] == [] and second["unchanged"] == 4
    changed = post_csv(client, legal, GOOD.replace("DE,16", "DE,15")).get_json()
    assert [(a["code"], a["before"]["minimum_age"]) for a in changed["added"]] == [("DE", 16)]


def test_one_bad_row_rejects_the_whole_file_and_reports_it(
    client: FlaskClient, legal: dict[str, str]
) -> None:
    post_csv(client, legal, GOOD)
    before = export(client, legal)
    bad = (
        GOOD.replace("DE,16", "DE,17")
        + "UK,13,2018-05-25,in_force,DPA 2018 s. 9,,\nFR,12,2018,in_force,,,\n"
    )
    response = post_csv(client, legal, bad)
    assert response.status_code == 422
    body = response.get_json(force=True)
    assert body["code"] == "import_rejected"
    assert "2 of 6 rows are invalid" in body["detail"]
    assert "did you mean GB?" in body["errors"]["rows.5.code"][0]
    assert {"rows.6.minimum_age", "rows.6.effective_from", "rows.6.citation"} <= set(body["errors"])
    assert export(client, legal) == before  # the valid DE change was not applied either


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("code,minimum_age\nDE,16\n", "header"),
        (HEADER.replace("citation", "cite"), "header"),
        (HEADER + "DE,16,2018-05-25,in_force,x,,,extra\n", "rows.1._row"),
        (
            HEADER + "DE,16,2018-05-25,in_force,x,,\nde,15,2018-05-25,in_force,y,,\n",
            "rows.2.effective_from",
        ),
        ('"code"x,minimum_age\n', "file"),  # unreadable header row: was a 500 (found by fuzzing)
    ],
)
def test_malformed_files_are_rejected(
    client: FlaskClient, legal: dict[str, str], text: str, key: str
) -> None:
    response = post_csv(client, legal, text)
    assert response.status_code == 422
    assert key in response.get_json(force=True)["errors"]


def test_a_file_with_carriage_return_line_endings_imports(
    client: FlaskClient, legal: dict[str, str]
) -> None:
    # Found by fuzzing: a bare CR in the header row was a 500.
    response = post_csv(client, legal, GOOD.replace("\n", "\r"))
    assert response.status_code == 200
    assert [a["code"] for a in response.get_json()["added"]] == ["default", "DE", "ES", "ES"]


def test_json_import_and_media_types(client: FlaskClient, legal: dict[str, str]) -> None:
    rules = [
        {
            "code": "default",
            "minimum_age": 13,
            "effective_from": "2000-01-01",
            "status": "in_force",
            "citation": "Floor",
        }
    ]
    ok = client.post(
        "/v1/jurisdictions/import?change_reason=json", json={"rules": rules}, headers=legal
    )
    assert ok.status_code == 200 and len(ok.get_json()["added"]) == 1
    assert (
        client.post(
            "/v1/jurisdictions/import?change_reason=x", json={"nope": 1}, headers=legal
        ).status_code
        == 422
    )
    malformed = client.post(
        "/v1/jurisdictions/import?change_reason=x",
        data='{"rules": [',
        headers={**legal, "Content-Type": "application/json"},
    )
    assert malformed.status_code == 400  # as every JSON body (DESIGN §5); it was a 422
    assert malformed.get_json(force=True)["code"] == "malformed_json"
    xml = client.post(
        "/v1/jurisdictions/import?change_reason=x",
        data="<rules/>",
        headers={**legal, "Content-Type": "application/xml"},
    )
    assert xml.status_code == 415
    assert post_csv(client, legal, GOOD, "").status_code == 200
    missing_reason = client.post(
        "/v1/jurisdictions/import", data=GOOD, headers={**legal, "Content-Type": "text/csv"}
    )
    assert missing_reason.status_code == 422


def test_replace_retires_codes_absent_from_the_file_but_never_default(
    client: FlaskClient, legal: dict[str, str]
) -> None:
    post_csv(client, legal, GOOD + "AT,14,2018-05-25,in_force,DSG s. 4(4),,\n")
    only_de = HEADER + "DE,16,2018-05-25,in_force,GDPR Art. 8(1),,https://law.example/de\n"
    body = post_csv(client, legal, only_de, "&replace=true").get_json()
    assert sorted(body["retired"]) == ["AT", "ES"]
    codes = [row.split(",")[0] for row in export(client, legal).splitlines()[1:]]
    assert codes == ["default", "DE"]


def test_export_reimports_to_an_identical_table(
    app_factory: Callable[..., Flask], make_key: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    source = app_factory(seed_jurisdictions=True)
    with source.app_context():
        from agegate.api_keys import service as keys
        from agegate.extensions import db

        with db.new_session() as s:
            _, key = keys.create_key(
                s, name="legal", scopes=["jurisdictions:read", "jurisdictions:write"], actor="test"
            )
            s.commit()
    headers = {"Authorization": f"Bearer {key}"}
    exported = export(source.test_client(), headers)
    assert post_csv(source.test_client(), headers, exported).get_json()["added"] == []

    target_db = tmp_path / "copy.db"
    target = app_factory(database_url=f"sqlite:///{target_db}", redis_url="")
    with target.app_context(), db.new_session() as s:
        _, key2 = keys.create_key(
            s, name="legal", scopes=["jurisdictions:read", "jurisdictions:write"], actor="test"
        )
        s.commit()
    headers2 = {"Authorization": f"Bearer {key2}"}
    imported = post_csv(target.test_client(), headers2, exported).get_json()
    assert imported["unchanged"] == 0 and len(imported["added"]) == exported.count("\n") - 1
    assert export(target.test_client(), headers2) == exported


def test_shipped_table_is_complete_and_cited() -> None:
    text = (config_dir() / "jurisdictions.csv").read_text(encoding="utf-8")
    rules = files.parse_rules(files.read_csv(text))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert all(row["citation"].strip() and row["source_url"].startswith("http") for row in rows)
    codes = {rule.code for rule in rules}
    eu_eea = (
        "AT BE BG HR CY CZ DK EE FI FR DE GR HU IE IT LV LT LU MT NL PL PT RO SK SI ES SE IS LI NO"
    )
    required = set(eu_eea.split()) | {
        "default",
        "GB",
        "CH",
        "US",
        "CA",
        "CA-QC",
        "KR",
        "CN",
        "JP",
        "IN",
        "BR",
        "CL",
        "ID",
        "VN",
        "AU",
        "SG",
    }
    assert required <= codes, required - codes
    # Territories with their own codes where another country's law applies.
    assert {"GP", "MQ", "GF", "RE", "YT", "AX", "PR", "GU"} <= codes


def test_enacted_laws_in_the_shipped_table_take_over_by_themselves() -> None:
    """An enacted law with a future commencement is in force from that day, not `proposed`
    (which never applies): India's DPDP Act takes the age to 18 on 13 May 2027."""
    from datetime import UTC, datetime

    from agegate.jurisdictions.rules import RuleTable, RuleVersion

    text = (config_dir() / "jurisdictions.csv").read_text(encoding="utf-8")
    now, counts = datetime(2026, 12, 7, tzinfo=UTC), dict[str, int]()
    versions = []
    for i, rule in enumerate(files.parse_rules(files.read_csv(text))):
        counts[rule.code] = counts.get(rule.code, 0) + 1
        versions.append(
            RuleVersion(
                id=i + 1,
                version=counts[rule.code],
                retired=False,
                changed_by="test",
                changed_at=now,
                change_reason="shipped table",
                **{f: getattr(rule, f) for f in ("code", "minimum_age", "effective_from")},
                **{f: getattr(rule, f) for f in ("status", "citation", "notes", "source_url")},
            )
        )
    table = RuleTable.build(1, versions)
    before, after = datetime(2027, 5, 12, 9, tzinfo=UTC), datetime(2027, 5, 13, 12, tzinfo=UTC)
    assert table.resolve("IN", None, before).rule.minimum_age == 13
    assert table.resolve("IN", None, after).rule.minimum_age == 18
    chile = table.resolve("CL", None, datetime(2026, 12, 7, tzinfo=UTC))
    assert (chile.matched, chile.rule.minimum_age) == ("country", 14)  # Ley 21.719
    italy = table.resolve("IT", None, datetime(2026, 12, 7, tzinfo=UTC)).rule
    assert italy.minimum_age == 14 and "n. 132" in italy.citation  # the AI law decides now


def test_first_start_loads_the_shipped_table(
    app_factory: Callable[..., Flask], make_key: Callable[..., dict[str, str]]
) -> None:
    app = app_factory(seed_jurisdictions=True)
    client = app.test_client()
    from agegate.api_keys import service as keys
    from agegate.extensions import db

    with app.app_context(), db.new_session() as s:
        _, key = keys.create_key(s, name="reader", scopes=["jurisdictions:read"], actor="test")
        s.commit()
    headers = {"Authorization": f"Bearer {key}"}
    assert (
        client.get("/v1/jurisdictions/resolve?country=DE", headers=headers).get_json()["rule"][
            "minimum_age"
        ]
        == 16
    )
    quebec = client.get(
        "/v1/jurisdictions/resolve?country=CA&subdivision=CA-QC", headers=headers
    ).get_json()
    assert quebec["rule"]["minimum_age"] == 14
    assert (
        client.get("/v1/jurisdictions/resolve?country=ZW", headers=headers).get_json()["rule"][
            "minimum_age"
        ]
        == 13
    )
    # A second start finds the table there and adds nothing.
    again = app_factory(seed_jurisdictions=True)
    assert (
        again.test_client()
        .get("/v1/jurisdictions/DE/history", headers=headers)
        .get_json()["items"][-1]["version"]
        == 1
    )
