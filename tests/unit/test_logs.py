"""Logs are one JSON object per line, and the redaction layer keeps secrets out of them."""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterator

import pytest
import structlog

from agegate import logs

# Made-up values, each in a shape a careless log line could carry.
BIRTH_DATES = [
    "2013-05-04",
    "2013/05/04",
    "2013-5-4",
    "04/05/2013",
    "4.5.2013",
    "05-04-13",
    "20130504",
    "4 May 2013",
    "May 4, 2013",
    "4th May 2013",
    "2013-05",
]
API_KEY = "agk_0123456789abcdef_Zm9vYmFyYmF6cXV4cXV1eF9leGFtcGxlX2tleQ"
PEM = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIExampleExampleExample\n-----END PRIVATE KEY-----"


@pytest.fixture
def output() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root, own = logging.getLogger(), logging.getLogger("agegate")
    saved = root.handlers[:], root.level, own.level
    logs.configure("DEBUG", stream, library_level="DEBUG")  # every line, to see it scrubbed
    yield stream
    root.handlers[:], root.level, own.level = saved
    structlog.contextvars.clear_contextvars()


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_every_record_is_one_json_line_with_level_logger_time_and_context(
    output: io.StringIO,
) -> None:
    structlog.contextvars.bind_contextvars(request_id="req-1", case_id="case-1")
    logs.get_logger("agegate.test").info("case.completed", targets=2, account_id="acct-7")
    logging.getLogger("sqlalchemy.pool").warning("plain %s record", "library")
    first, second = lines(output)
    assert first["event"] == "case.completed" and first["level"] == "info"
    assert first["logger"] == "agegate.test" and first["targets"] == 2
    assert first["account_id"] == "acct-7"  # ordinary values pass untouched
    assert first["pid"] == os.getpid()
    assert (first["request_id"], first["case_id"]) == ("req-1", "case-1")
    assert str(first["timestamp"]).endswith("Z")
    assert second["event"] == "plain library record" and second["level"] == "warning"
    assert second["request_id"] == "req-1"


def test_dates_keys_and_pem_blocks_are_scrubbed_from_messages_and_fields(
    output: io.StringIO,
) -> None:
    log = logs.get_logger("agegate.test")
    for date in BIRTH_DATES:
        log.info(f"declared {date} at signup", value=date, nested={"list": [date]})
        logging.getLogger("library").info("body was %s", {"dob_field": date})
    log.warning("auth", header=f"Bearer {API_KEY}", note=f"key {API_KEY} used")
    log.error("config", value=PEM)
    text = output.getvalue()
    for secret in [*BIRTH_DATES, API_KEY, "MC4CAQAwBQYDK2VwBCIE", "Bearer"]:
        assert secret not in text, secret
    assert all(json.loads(line) for line in text.splitlines())
    assert text.count(logs.REDACTED) >= 4 * len(BIRTH_DATES) + 3


def test_fields_named_like_secrets_are_blanked_whatever_they_hold(output: io.StringIO) -> None:
    logs.get_logger("agegate.test").info(
        "flag.raised",
        account_id="acct-1",
        evidence="the user said they are in year 6 at school",
        date_of_birth=2013,
        api_key="anything",
        authorization="anything",
        secret_key="anything",
        receipt_signing_key="anything",
        password="anything",
    )
    (line,) = lines(output)
    assert line["account_id"] == "acct-1"
    for field in (
        "evidence",
        "date_of_birth",
        "api_key",
        "authorization",
        "secret_key",
        "receipt_signing_key",
        "password",
    ):
        assert line[field] == logs.REDACTED, field


def test_a_traceback_is_scrubbed_too(output: io.StringIO) -> None:
    try:
        raise ValueError("could not parse 2013-05-04")
    except ValueError:
        logs.get_logger("agegate.test").exception("request.failed")
    (line,) = lines(output)
    assert "ValueError" in str(line["exception"])
    assert "2013-05-04" not in output.getvalue()


def test_gunicorn_access_lines_become_fields_without_the_query_string(
    output: io.StringIO,
) -> None:
    atoms = {
        "m": "POST",
        "U": "/v1/age-checks",
        "q": "date_of_birth=2013-05-04",
        "s": "200",
        "D": 1534,
        "p": "<4242>",
        "{x-request-id}o": "req-9",
    }
    logging.getLogger("gunicorn.access").info("%(m)s %(U)s?%(q)s", atoms)
    (line,) = lines(output)
    assert line["event"] == "request"
    assert (line["method"], line["path"], line["status"]) == ("POST", "/v1/age-checks", 200)
    assert line["duration_ms"] == 1.534 and line["request_id"] == "req-9"
    assert "2013" not in output.getvalue()
