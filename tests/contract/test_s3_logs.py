"""botocore's DEBUG lines carry request headers: the AWS session token, the access key id in
`Credential=`, the signature. Library loggers stay at WARNING unless asked for, and when
asked for, the redaction layer removes each of those (against the S3 stand-in, moto)."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import boto3
import pytest

from agegate import logs

ACCESS_KEY_ID = "ASIAQWERTYUIOPASDFGH"
SECRET = "made-up-secret-access-key-for-the-log-test"
SESSION_TOKEN = "FwoGZXIvYXdzEMadeUpSessionTokenForTheLogTest0123456789"


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch, s3_endpoint: str) -> str:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)
    return s3_endpoint


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root, own = logging.getLogger(), logging.getLogger("agegate")
    saved = root.handlers[:], root.level, own.level
    yield
    root.handlers[:], root.level, own.level = saved


def use_s3(endpoint: str) -> None:
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.create_bucket(Bucket="log-test")
    client.put_object(Bucket="log-test", Key="uploads/acct-1/clip.mp4", Body=b"x")
    client.list_objects_v2(Bucket="log-test", Prefix="uploads/")
    client.generate_presigned_url(
        "get_object", Params={"Bucket": "log-test", "Key": "uploads/acct-1/clip.mp4"}
    )


def test_library_loggers_stay_at_warning_unless_asked(
    credentials: str, restore_logging: None
) -> None:
    stream = io.StringIO()
    logs.configure("DEBUG", stream)  # agegate at DEBUG; the libraries keep to WARNING
    use_s3(credentials)
    logs.get_logger("agegate.test").debug("own.debug_line")
    names = [json.loads(line)["logger"] for line in stream.getvalue().splitlines()]
    assert "agegate.test" in names
    assert not [n for n in names if n.startswith(("botocore", "boto3", "urllib3"))]


def test_asked_for_botocore_lines_keep_no_credential(
    credentials: str, restore_logging: None
) -> None:
    stream = io.StringIO()
    logs.configure("DEBUG", stream, library_level="DEBUG")
    use_s3(credentials)
    text = stream.getvalue()
    assert '"logger": "botocore' in text  # the lines that carry headers were written
    assert "X-Amz-Security-Token" in text or "x-amz-security-token" in text.lower()
    for secret in (ACCESS_KEY_ID, SESSION_TOKEN, SECRET):
        assert secret not in text
    assert not re.search(r"(?i)signature=(?!\[redacted\])", text)
    assert not re.search(r"(?i)credential=(?!\[redacted\])", text)
