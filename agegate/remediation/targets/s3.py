"""Kind `s3`: object versions under key prefixes such as `uploads/{account_id}/` in a bucket.

Items are object versions and delete markers (ListObjectVersions, which also lists the
objects of an unversioned bucket), deleted by (key, version id) with DeleteObjects: in a
versioned bucket a plain delete only hides data behind a marker, so every version goes.

A prefix template ending in `/` means everything under it; one ending in `{account_id}`
names that exact key. `{account_id}` may only be followed by `/` or end the template, and
ids never hold `/`, so `acct-1` cannot match `acct-10`'s objects. Templates that could meet,
in this target or in another over the same bucket, are refused (overlap.py): with
`{account_id}/` and `uploads/{account_id}/`, an account named `uploads` would match
everyone's uploads.

Known limit: data in the bucket that no target describes is not checked; only the bucket's
key layout can keep it apart.

Credentials come from boto3's default chain (environment, shared config, instance role),
never from the targets file. boto3 is an optional dependency: `pip install 'agegate[s3]'`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from itertools import islice
from typing import Any
from urllib.parse import urlsplit

from agegate.remediation.targets.base import (
    PurgeContext,
    TargetConfigError,
    TargetError,
)
from agegate.remediation.targets.config import COMMON_KEYS, Fields, account_template_problem
from agegate.remediation.targets.ids import PATTERN_KEY, AccountIds
from agegate.remediation.targets.overlap import Layout, pieces_of

DELETE_BATCH = 1000  # the most keys one DeleteObjects call accepts
_ACCOUNT = "{account_id}"
_CREDENTIAL_KEYS = (
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
    "access_key",
    "secret_key",
    "access_key_id",
    "secret_access_key",
    "session_token",
    "credentials",
)


def prefix_problem(template: str) -> str | None:
    if problem := account_template_problem(template):
        return problem
    for piece in template.split(_ACCOUNT)[1:]:
        if piece[:1] not in ("", "/"):
            return (
                f"{template!r}: {_ACCOUNT} must be followed by '/' or end the prefix, "
                f"or one account's prefix would match another's objects ('acct-1' and 'acct-10')"
            )
    return None


def _boto3() -> Any:
    try:
        import boto3
    except ImportError:
        return None
    return boto3


class S3Target:
    kind = "s3"

    def __init__(
        self,
        name: str,
        bucket: str,
        prefixes: list[str],
        client: Any,
        endpoint: str,
        ids: AccountIds,
    ) -> None:
        self.name = name
        self.ids = ids
        self.layouts: tuple[Layout, ...] = ()
        self.bucket = bucket
        self.prefixes = prefixes
        self.client = client
        self.endpoint = endpoint

    @classmethod
    def from_config(cls, config: dict[str, Any], location: str) -> S3Target:
        allowed = (*COMMON_KEYS, "bucket", "prefixes", "endpoint_url", "region", PATTERN_KEY)
        fields = Fields(
            {k: v for k, v in config.items() if k not in _CREDENTIAL_KEYS}, location, allowed
        )
        for key in sorted(k for k in config if k in _CREDENTIAL_KEYS):
            fields.problem(
                f"{key}: credentials never live in the targets file; boto3 reads them from "
                "the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_PROFILE) or an instance role"
            )
        bucket = fields.string("bucket")
        prefixes = fields.strings("prefixes")
        for index, template in enumerate(prefixes):
            if problem := prefix_problem(template):
                fields.problem(f"prefixes[{index}]: {problem}")
        endpoint = config.get("endpoint_url")
        if endpoint is not None:
            endpoint = fields.string("endpoint_url")
            try:
                parts = urlsplit(endpoint)
                hostname = parts.hostname
            except ValueError:
                parts, hostname = urlsplit(""), None
            if endpoint and (parts.scheme not in ("http", "https") or not hostname):
                fields.problem("endpoint_url: expected an http(s) URL such as https://s3.example")
            elif "@" in parts.netloc:
                fields.problem("endpoint_url: carries credentials; they come from the environment")
        region = fields.string("region") if "region" in config else None
        # A prefix's id is followed by `/`, which no id holds, or ends an exact key: no prefix
        # needs a delimiter; a pattern may still narrow the ids.
        ids = fields.account_ids()
        fields.raise_problems()
        assert ids is not None  # a wrong pattern is a problem, raised above
        boto3 = _boto3()
        if boto3 is None:
            raise TargetConfigError(f"{location}: kind s3 needs boto3: pip install 'agegate[s3]'")
        from botocore.config import Config

        client = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint or None,
            region_name=region,
            config=Config(
                connect_timeout=5, read_timeout=30, retries={"max_attempts": 3, "mode": "standard"}
            ),
        )
        target = cls(config["name"], bucket, list(prefixes), client, endpoint or "", ids)
        store = ("s3", endpoint or "", bucket)
        target.layouts = tuple(
            Layout(
                f"{location}: prefixes[{i}] {prefix!r}",
                store,
                pieces_of(prefix, [("*", ".*")] if prefix.endswith("/") else []),
                ids,
                False,
            )
            for i, prefix in enumerate(prefixes)
        )
        return target

    def check(self) -> None:
        with self._errors():
            self.client.head_bucket(Bucket=self.bucket)

    def count(self, account_id: str) -> int:
        self.ids.checked(account_id)
        with self._errors():
            return sum(1 for _ in self._versions(account_id))

    def purge_batch(self, account_id: str, limit: int, context: PurgeContext) -> int:
        self.ids.checked(account_id)
        removed = 0
        with self._errors():
            found = list(islice(self._versions(account_id), limit))
            for start in range(0, len(found), DELETE_BATCH):
                chunk = found[start : start + DELETE_BATCH]
                response = self.client.delete_objects(
                    Bucket=self.bucket,
                    Delete={
                        "Objects": [{"Key": key, "VersionId": version} for key, version in chunk],
                        "Quiet": True,
                    },
                )
                errors = response.get("Errors") or []
                removed += len(chunk) - len(errors)
                if errors:  # codes only: keys are the account's own names, kept out of logs
                    codes = sorted({str(e.get("Code", "unknown")) for e in errors})
                    raise TargetError(
                        f"{self.name}: DeleteObjects refused {len(errors)} of {len(chunk)} "
                        f"object versions ({', '.join(codes)}); {removed} deleted"
                    )
        return removed

    def close(self) -> None:
        self.client.close()

    def _versions(self, account_id: str) -> Iterator[tuple[str, str]]:
        """(key, version id) of every version and delete marker once, as listed."""
        seen: set[tuple[str, str]] = set()
        paginator = self.client.get_paginator("list_object_versions")
        for template in self.prefixes:
            prefix = template.replace(_ACCOUNT, account_id)
            exact = not template.endswith("/")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for entry in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
                    item = (str(entry["Key"]), str(entry.get("VersionId") or "null"))
                    if (exact and item[0] != prefix) or item in seen:
                        continue
                    seen.add(item)
                    yield item

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """botocore's errors as TargetError: the code and message the server sent, or the
        error's type and text; never the request, whose headers carry the signature."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = error.get("Code") or "error"
            message = error.get("Message") or exc.operation_name
            raise TargetError(f"{self.name}: {code}: {message}") from None
        except BotoCoreError as exc:
            raise TargetError(f"{self.name}: {type(exc).__name__}: {exc}") from None
