"""Kind `http`: a downstream service deletes its copy (model provider, share links, CDN).

Every request is signed: `X-Agegate-Signature: v1=<hex HMAC-SHA256>` over the method, the
path (with query), the timestamp in `X-Agegate-Timestamp` and the SHA-256 of the body, one
per line, with the secret named by `secret_env` (read from the environment, never the file).
`Idempotency-Key` is the case id and the target's name, so a retry is the same request.
2xx: done (the service may report `{"deleted": n}`; nothing reported counts as 1). 202 with
a status URL (`status_url` in the body, or `Location`) on the target's own origin: polled
until `{"status": "done"}`, for up to `deadline` (days, for vendors that take time). 429
and 5xx are retried, honouring `Retry-After`. The same request, without the purge
semantics, serves the containment and release hooks.

The service's answers are not trusted further than that: only http and https, redirects
are not followed, an answer is read up to `MAX_ANSWER_BYTES` and the whole exchange ends
at the request's `timeout`. Anything else is a `TargetError` (a retry), never a `done`.
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import hmac
import http.client
import json
import os
import re
import socket
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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
SCHEMES = {"http": 80, "https": 443}
MAX_ANSWER_BYTES = 64 * 1024  # a deletion's answer is a few fields; a bigger one is refused
MAX_DELETED = 2**31 - 1  # a reported count must fit the step's integer columns
MAX_RETRY_AFTER = 365 * 86400.0  # the engine clamps further, to its backoff cap
PENDING_STATES = (None, "pending", "accepted", "processing")


class TargetPending(TargetError):
    """The service accepted the deletion and is still working: look again later, after the
    wait the service asked for (`told`, Retry-After) when it did, else after `poll_seconds`."""

    def __init__(self, message: str, told: float | None, poll_seconds: float) -> None:
        super().__init__(message)
        self.told = told
        self.poll_seconds = poll_seconds


def sign(secret: bytes, method: str, path: str, timestamp: str, body: bytes) -> str:
    message = "\n".join([method, path, timestamp, hashlib.sha256(body).hexdigest()])
    return "v1=" + hmac.new(secret, message.encode(), hashlib.sha256).hexdigest()


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """A `Retry-After` value in either of its forms (RFC 9110 §10.2.3): whole seconds, or an
    HTTP date (a date already past is 0). None when absent or neither form."""
    if value is None:
        return None
    value = value.strip()
    if re.fullmatch(r"[0-9]+", value):
        return MAX_RETRY_AFTER if len(value) > 9 else min(float(value), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000": the date is in UTC, as every HTTP date is
        when = when.replace(tzinfo=UTC)
    wait = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(wait, 0.0), MAX_RETRY_AFTER)


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: dict[str, Any]

    def retry_after(self) -> float | None:
        return retry_after_seconds(self.headers.get("retry-after"))


def origin(url: str) -> tuple[str, str, int] | None:
    """Scheme, host and port of an http(s) URL; None for any other URL."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in SCHEMES or not parts.hostname:
        return None
    return parts.scheme, parts.hostname, port or SCHEMES[parts.scheme]


class _Deadline:
    """Ends an exchange at its deadline, wherever it is: a timer shuts the socket down,
    which wakes a read blocked on a server that answers one byte at a time (a socket
    timeout alone bounds each read, not the exchange)."""

    def __init__(self, connection: http.client.HTTPConnection, seconds: float) -> None:
        self.connection = connection
        self.socket: socket.socket | None = None
        self.ends = time.monotonic() + seconds
        self.timer = threading.Timer(seconds, self._cut)
        self.timer.daemon = True

    def _cut(self) -> None:
        for sock in {self.socket, self.connection.sock} - {None}:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # type: ignore[union-attr]

    def passed(self) -> bool:
        return time.monotonic() >= self.ends


def exchange(
    name: str, url: str, method: str, headers: dict[str, str], body: bytes, timeout: float
) -> Reply:
    """One request and its answer, within `timeout` seconds from connecting to the last
    byte; transport failures, a late or an oversized answer raise TargetError."""
    where = origin(url)
    if where is None:
        raise TargetError(f"{name}: not an http or https URL")
    scheme, host, port = where
    path = _path(url)
    connection = (
        http.client.HTTPSConnection(host, port, timeout=timeout)
        if scheme == "https"
        else http.client.HTTPConnection(host, port, timeout=timeout)
    )
    deadline = _Deadline(connection, timeout)
    deadline.timer.start()
    try:
        connection.connect()
        deadline.socket = connection.sock  # the answer may outlive the connection's own hold
        if deadline.passed():  # the timer fired before there was a socket to cut (DNS)
            raise TimeoutError
        connection.request(method, path, body=body or None, headers=headers)
        response = connection.getresponse()
        raw = response.read(MAX_ANSWER_BYTES + 1)
        reply_headers = _lower(response.getheaders())
    except (OSError, http.client.HTTPException, ValueError) as exc:
        if deadline.passed():
            raise TargetError(f"{name}: no complete answer within {timeout:g} s") from None
        raise TargetError(f"{name}: {type(exc).__name__} reaching the service") from None
    finally:
        deadline.timer.cancel()
        connection.close()
    if deadline.passed():  # an answer cut short by the deadline is not an answer
        raise TargetError(f"{name}: no complete answer within {timeout:g} s")
    if len(raw) > MAX_ANSWER_BYTES:
        raise TargetError(f"{name}: answer larger than {MAX_ANSWER_BYTES} bytes")
    return Reply(response.status, reply_headers, _json(raw))


@dataclass(frozen=True)
class HttpRequest:
    """One configured request: a template URL, a method, an optional signing secret, and
    the deadline of one exchange (`timeout`, seconds)."""

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
        if url and origin(url.replace("{account_id}", "x")) is None:
            fields.problem("url: expected an http:// or https:// URL with a host")
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

    def url_for(self, account_id: str) -> str:
        return self.url.replace("{account_id}", checked_account_id(account_id))

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
        target = url or self.url_for(account_id)
        body = b"" if method == "GET" else json.dumps({"account_id": account_id}).encode()
        path = _path(target)
        headers = {"Idempotency-Key": idempotency_key, "Content-Type": "application/json"}
        if self.secret is not None:
            timestamp = str(int(time.time()))
            headers[TIMESTAMP_HEADER] = timestamp
            headers[SIGNATURE_HEADER] = sign(self.secret, method, path, timestamp, body)
        return exchange(self.name, target, method, headers, body, self.timeout)

    def check(self) -> None:
        _, host, port = origin(self.url.replace("{account_id}", "x")) or ("", "", 0)
        try:
            socket.create_connection((host, port), timeout=self.timeout).close()
        except OSError as exc:
            raise TargetError(f"{self.name}: cannot connect ({type(exc).__name__})") from None


def run_hook(hook: HttpRequest, account_id: str, case_id: str) -> None:
    """A containment or release hook: any 2xx (202 included) is done; anything else raises."""
    reply = hook.send(account_id, f"{case_id}:{hook.name}")
    if not 200 <= reply.status < 300:
        raise _not_done(hook.name, reply)


def _not_done(name: str, reply: Reply) -> TargetError:
    """The error for an answer that is not a success: every one is retried, and the
    message says which kind of answer it was."""
    if 300 <= reply.status < 400:
        return TargetError(f"{name}: HTTP {reply.status} (redirects are not followed)")
    if reply.status == 429 or reply.status >= 500:
        return TargetError(f"{name}: HTTP {reply.status}", retry_after=reply.retry_after() or 0.0)
    return TargetError(f"{name}: HTTP {reply.status} (refused)")


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
        if 200 <= reply.status < 300:
            return self._deleted(reply)
        raise _not_done(self.name, reply)

    def _deleted(self, reply: Reply) -> int:
        """The count a successful answer reports (1 when it reports none)."""
        deleted = reply.body.get("deleted", 1)
        if isinstance(deleted, bool) or not isinstance(deleted, int):
            raise TargetError(f"{self.name}: the answer's deleted count is not a whole number")
        if not 0 <= deleted <= MAX_DELETED:
            raise TargetError(f"{self.name}: the answer's deleted count is out of range")
        return deleted

    def _poll(self, account_id: str, accepted: Reply, context: PurgeContext) -> int:
        status_url = accepted.body.get("status_url") or accepted.headers.get("location")
        if not isinstance(status_url, str):
            raise TargetError(f"{self.name}: 202 without a status URL")
        own = self.request.url_for(account_id)
        status_url = urljoin(own, status_url)
        if origin(status_url) is None or origin(status_url) != origin(own):
            raise TargetError(
                f"{self.name}: the status URL is not on the target's origin "
                f"({_origin_text(own)}); it is not polled"
            )
        status = self.request.send(
            account_id, f"{context.case_id}:{self.name}", url=status_url, method="GET"
        )
        state = status.body.get("status")
        if status.status == 200 and state == "done":
            return self._deleted(status)
        if status.status in (200, 202) and state in PENDING_STATES:
            started = context.started_at or datetime.now().astimezone()
            if datetime.now().astimezone() - started > self.deadline:
                raise TargetError(f"{self.name}: still pending after {self.deadline.days} days")
            raise TargetPending(
                f"{self.name}: deletion pending", status.retry_after(), self.poll_seconds
            )
        if 200 <= status.status < 300:
            raise TargetError(f"{self.name}: the status URL answered an unknown status")
        raise _not_done(self.name, status)

    def close(self) -> None:
        return None


def _path(url: str) -> str:
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def _origin_text(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def _lower(items: Any) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in items}


def _json(raw: bytes) -> dict[str, Any]:
    """The answer's JSON object, or {} for anything else (nesting too deep included)."""
    try:
        data = json.loads(raw) if raw else {}
    except (ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}
