"""Kind `http`: a downstream service deletes its copy (model provider, share links, CDN).

Every request is signed: `X-Agegate-Signature: v1=<hex HMAC-SHA256>` over the method, the
path (with query), the timestamp in `X-Agegate-Timestamp` and the SHA-256 of the body, one
per line, with the secret named by `secret_env` (read from the environment, never the file).
`Idempotency-Key` is the case id and the target's name, so a retry is the same request.
2xx: done (the service may report `{"deleted": n}`; nothing reported counts as 1). 202 with
a status URL (`status_url` in the body, or `Location`): polled until `{"status": "done"}`,
for up to `deadline` (days, for vendors that take time). 429 and 5xx are retried, honouring
`Retry-After`. The same request, without the purge semantics, serves the containment and
release hooks.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urljoin, urlsplit

from agegate.remediation.targets.base import (
    PurgeContext,
    TargetConfigError,
    TargetError,
    checked_account_id,
)
from agegate.remediation.targets.config import COMMON_KEYS, Fields

SIGNATURE_HEADER = "X-Agegate-Signature"
TIMESTAMP_HEADER = "X-Agegate-Timestamp"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


class TargetPending(TargetError):
    """The service accepted the deletion and is still working: look again later."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def sign(secret: bytes, method: str, path: str, timestamp: str, body: bytes) -> str:
    message = "\n".join([method, path, timestamp, hashlib.sha256(body).hexdigest()])
    return "v1=" + hmac.new(secret, message.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: dict[str, Any]

    def retry_after(self, default: float) -> float:
        try:
            return max(float(self.headers.get("retry-after", default)), 0.0)
        except ValueError:
            return default


@dataclass(frozen=True)
class HttpRequest:
    """One configured request: a template URL, a method, an optional signing secret."""

    name: str
    method: str
    url: str
    secret: bytes | None
    timeout: float = 10.0

    @classmethod
    def from_config(
        cls, config: dict[str, Any], location: str, extra: tuple[str, ...] = ()
    ) -> HttpRequest:
        fields = Fields(
            config, location, (*COMMON_KEYS, "url", "method", "secret_env", "timeout", *extra)
        )
        url, method = fields.string("url"), str(config.get("method", "POST")).upper()
        if url and urlsplit(url).scheme not in ("http", "https"):
            fields.problem("url: expected an http:// or https:// URL")
        if method not in METHODS:
            fields.problem(f"method {method!r}: expected one of {', '.join(METHODS)}")
        secret_env = config.get("secret_env")
        secret = None
        if secret_env is not None:
            if not isinstance(secret_env, str) or not os.environ.get(secret_env):
                fields.problem(f"secret_env: environment variable {secret_env!r} is not set")
            else:
                secret = os.environ[secret_env].encode()
        timeout = fields.integer("timeout", 10, 1, 300)
        fields.raise_problems()
        return cls(str(config["name"]), method, url, secret, float(timeout))

    def send(
        self,
        account_id: str,
        idempotency_key: str,
        *,
        url: str | None = None,
        method: str | None = None,
    ) -> Reply:
        """Send the request for an account (or GET a status URL); transport failures raise."""
        method = method or self.method
        target = url or self.url.replace("{account_id}", checked_account_id(account_id))
        body = b"" if method == "GET" else json.dumps({"account_id": account_id}).encode()
        parts = urlsplit(target)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        headers = {"Idempotency-Key": idempotency_key, "Content-Type": "application/json"}
        if self.secret is not None:
            timestamp = str(int(time.time()))
            headers[TIMESTAMP_HEADER] = timestamp
            headers[SIGNATURE_HEADER] = sign(self.secret, method, path, timestamp, body)
        request = urllib.request.Request(target, data=body or None, method=method, headers=headers)  # noqa: S310 (http(s) checked at load)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return Reply(
                    response.status, _lower(response.headers.items()), _json(response.read())
                )
        except urllib.error.HTTPError as error:
            with error:
                return Reply(error.code, _lower(error.headers.items()), _json(error.read()))
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise TargetError(f"{self.name}: {type(exc).__name__} reaching the service") from None

    def check(self) -> None:
        parts = urlsplit(self.url.replace("{account_id}", "x"))
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            socket.create_connection((parts.hostname or "", port), timeout=self.timeout).close()
        except OSError as exc:
            raise TargetError(f"{self.name}: cannot connect ({type(exc).__name__})") from None


def run_hook(hook: HttpRequest, account_id: str, case_id: str) -> None:
    """A containment or release hook: any 2xx (202 included) is done; anything else raises."""
    reply = hook.send(account_id, f"{case_id}:{hook.name}")
    if not 200 <= reply.status < 300:
        raise TargetError(f"{hook.name}: HTTP {reply.status}", retry_after=reply.retry_after(0))


class HttpTarget:
    kind = "http"
    # What the service reports when it deletes is the count (it cannot be asked beforehand).
    counts_when_purged = True

    def __init__(self, request: HttpRequest, deadline: timedelta, poll_seconds: float) -> None:
        self.name = request.name
        self.request = request
        self.deadline = deadline
        self.poll_seconds = poll_seconds

    @classmethod
    def from_config(cls, config: dict[str, Any], location: str) -> HttpTarget:
        request = HttpRequest.from_config(config, location, ("deadline_days", "poll_seconds"))
        days = config.get("deadline_days", 7)
        poll = config.get("poll_seconds", 60)
        if (
            not isinstance(days, int)
            or not 0 < days <= 365
            or not isinstance(poll, int)
            or not 0 < poll <= 86400
        ):
            raise TargetConfigError(
                f"{location}: deadline_days 1-365 and poll_seconds 1-86400, whole numbers"
            )
        return cls(request, timedelta(days=days), float(poll))

    def check(self) -> None:
        self.request.check()

    def count(self, account_id: str) -> int:
        return 1

    def purge_batch(self, account_id: str, limit: int, context: PurgeContext) -> int:
        if context.purged:  # the service already confirmed this case's deletion
            return 0
        reply = self.request.send(account_id, f"{context.case_id}:{self.name}")
        if reply.status == 202:
            return self._poll(account_id, reply, context)
        return self._done(reply)

    def _done(self, reply: Reply) -> int:
        if 200 <= reply.status < 300:
            deleted = reply.body.get("deleted")
            return deleted if isinstance(deleted, int) and deleted >= 0 else 1
        if reply.status == 429 or reply.status >= 500:
            raise TargetError(f"{self.name}: HTTP {reply.status}", retry_after=reply.retry_after(0))
        raise TargetError(f"{self.name}: HTTP {reply.status} (refused)")

    def _poll(self, account_id: str, accepted: Reply, context: PurgeContext) -> int:
        status_url = accepted.body.get("status_url") or accepted.headers.get("location")
        if not isinstance(status_url, str):
            raise TargetError(f"{self.name}: 202 without a status URL")
        status = self.request.send(
            account_id,
            f"{context.case_id}:{self.name}",
            url=urljoin(self.request.url, status_url),
            method="GET",
        )
        state = status.body.get("status")
        if status.status == 200 and state == "done":
            return self._done(status)
        if status.status in (200, 202) and state in (None, "pending", "accepted", "processing"):
            started = context.started_at or datetime.now().astimezone()
            if datetime.now().astimezone() - started > self.deadline:
                raise TargetError(f"{self.name}: still pending after {self.deadline.days} days")
            raise TargetPending(
                f"{self.name}: deletion pending", status.retry_after(self.poll_seconds)
            )
        return self._done(status)

    def close(self) -> None:
        return None


def _lower(items: Any) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in items}


def _json(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
