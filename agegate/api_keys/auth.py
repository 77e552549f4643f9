"""The edge's guard: bearer key → principal → scope → accepted body type, before any view runs."""

from __future__ import annotations

import functools
import hashlib
import threading
import time
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

from flask import Request, current_app

from agegate.api_keys.models import Scope
from agegate.api_keys.ratelimit import RateLimiter
from agegate.api_keys.service import Principal, authenticate
from agegate.apidoc import doc_only
from agegate.blueprints import Blueprint
from agegate.db import SQLITE_BEGIN
from agegate.edge import current_request
from agegate.errors import (
    AuthenticationError,
    PermissionDeniedError,
    RateLimitedError,
    UnsupportedMediaTypeError,
)
from agegate.extensions import db

F = TypeVar("F", bound=Callable[..., Any])

# How long a verified key is trusted without asking the database again: a revoked key stops
# working on every process within this many seconds.
KEY_CACHE_SECONDS = 5.0
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_PRINCIPAL = "agegate.principal"  # where a request keeps its caller, in the WSGI environ


class _KeyCache:
    def __init__(self) -> None:
        self._entries: dict[str, tuple[Principal, float]] = {}
        self._lock = threading.Lock()

    def get(self, digest: str) -> Principal | None:
        entry = self._entries.get(digest)
        if entry is None or entry[1] < time.monotonic():
            return None
        return entry[0]

    def put(self, digest: str, principal: Principal) -> None:
        with self._lock:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[digest] = (principal, time.monotonic() + KEY_CACHE_SECONDS)


def requires(scope: Scope, *, accepts: tuple[str, ...] = ("application/json",)) -> Callable[[F], F]:
    """Guard a view: a valid key (401), with `scope` (403), sending an accepted body type (415)."""

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            # The request and the app's extensions are looked up once, not once per use.
            req, extensions = current_request(), current_app.extensions
            principal = _principal(req, extensions)
            if scope.value not in principal.scopes:
                raise PermissionDeniedError(f"this key does not have the scope {scope.value!r}")
            _check_rate(extensions, principal)
            _check_body_type(req, accepts)
            return view(*args, **kwargs)

        guarded.required_scope = scope  # type: ignore[attr-defined]
        documented: F = doc_only(Blueprint.doc(security=[{"bearerAuth": [scope.value]}]))(guarded)
        return documented

    return decorator


def public(view: F) -> F:
    """Mark a view as open to anyone (documented with no security requirement)."""
    view.required_scope = None  # type: ignore[attr-defined]
    documented: F = doc_only(Blueprint.doc(security=[]))(view)
    return documented


def current_principal() -> Principal:
    """The caller of this request, authenticated once per request."""
    return _principal(current_request(), current_app.extensions)


def _principal(req: Request, extensions: dict[str, Any]) -> Principal:
    principal: Principal | None = req.environ.get(_PRINCIPAL)
    if principal is not None:
        return principal
    header = req.environ.get("HTTP_AUTHORIZATION", "")  # what request.headers would read
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        _failed(req, extensions, "send an API key: Authorization: Bearer <key>")
    principal = _lookup(req, extensions, presented.strip())
    if principal is None:
        _failed(req, extensions, "the API key is not valid (unknown, revoked or malformed)")
    req.environ[_PRINCIPAL] = principal
    return principal


def _lookup(req: Request, extensions: dict[str, Any], presented: str) -> Principal | None:
    cache: _KeyCache = extensions.setdefault("agegate.key_cache", _KeyCache())
    digest = hashlib.sha256(presented.encode()).hexdigest()
    principal = cache.get(digest)
    if principal is None:
        failures: RateLimiter = extensions["agegate.auth_failures"]
        if failures.exhausted(_failure_key(req)):  # a database read is what a flood would cost
            raise _too_many_failures(failures)
        # A short read of its own, so the request's transaction has not begun yet.
        with db.engine.connect().execution_options(**{SQLITE_BEGIN: "DEFERRED"}) as conn:
            principal = authenticate(conn, presented)
        if principal is not None:
            cache.put(digest, principal)
    return principal


def _failed(req: Request, extensions: dict[str, Any], detail: str) -> NoReturn:
    """A request without a valid key: 401, or 429 once its address is over its budget of
    failures this second (a valid key never counts)."""
    failures: RateLimiter = extensions["agegate.auth_failures"]
    if not failures.allow(_failure_key(req)):
        raise _too_many_failures(failures)
    raise AuthenticationError(detail)


def _failure_key(req: Request) -> str:
    # API key names hold no ':', so these never meet a key's own counter. Behind trusted
    # proxies, remote_addr is the address they forwarded (AGEGATE_TRUSTED_PROXIES).
    return f"auth-failures:{req.remote_addr or 'unknown'}"


def _too_many_failures(failures: RateLimiter) -> RateLimitedError:
    return RateLimitedError(
        f"more than {failures.per_second} requests per second without a valid API key from "
        "this address; slow down",
        retry_after=1,
    )


def _check_rate(extensions: dict[str, Any], principal: Principal) -> None:
    limiter: RateLimiter = extensions["agegate.rate_limiter"]
    if not limiter.allow(principal.key_name):
        raise RateLimitedError(
            f"more than {limiter.per_second} requests per second with this key; slow down",
            retry_after=1,
        )


def _check_body_type(req: Request, accepts: tuple[str, ...]) -> None:
    if req.method not in BODY_METHODS or req.environ.get("CONTENT_TYPE") in accepts:
        return  # the second test is the common case, without parsing the header
    has_body = bool(req.content_length) or req.headers.get("Transfer-Encoding")
    if has_body and req.mimetype not in accepts:
        raise UnsupportedMediaTypeError(
            f"send the body as {' or '.join(accepts)} (got {req.mimetype or 'no type'})"
        )
