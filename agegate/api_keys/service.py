"""Create, list, revoke and authenticate API keys."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from agegate.api_keys.models import ApiKey, Scope
from agegate.audit import service as audit
from agegate.db import utcnow
from agegate.errors import ConflictError, NotFoundError, ValidationError

KEY_PREFIX = "agk_"
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_KEY_PATTERN = re.compile(r"agk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's name and what it may do."""

    key_name: str
    scopes: frozenset[str]

    @property
    def actor(self) -> str:
        return f"key:{self.key_name}"


def create_key(
    session: Session, *, name: str, scopes: Iterable[str], actor: str, replace: bool = False
) -> tuple[ApiKey, str]:
    """Create a key; the plaintext is returned once and never stored.

    A live key of the same name is refused, unless `replace` asks to revoke it in the same
    transaction (a script that sets keys up can then run again).
    """
    scope_list = _validated_scopes(scopes)
    if not NAME_PATTERN.fullmatch(name):
        raise ValidationError(
            "invalid key name",
            errors={
                "name": ["use 1-64 of a-z, 0-9, '.', '_', '-', starting with a letter or digit"]
            },
        )
    if live_key_exists(session, name):
        if not replace:
            raise ConflictError(
                f"a live key named {name!r} exists: revoke it first, or create with --replace",
                code="key_exists",
            )
        revoke_key(session, name=name, actor=actor)
        session.flush()  # the old key leaves the live names before the new one takes its name
    lookup_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    key = ApiKey(
        name=name,
        lookup_id=lookup_id,
        secret_sha256=_sha256(secret),
        scopes=scope_list,
        created_at=utcnow(),
        created_by=actor,
    )
    session.add(key)
    try:
        session.flush()
    except IntegrityError:
        raise ConflictError(f"a live key named {name!r} exists", code="key_exists") from None
    audit.record(
        session,
        actor=actor,
        event="api_key.created",
        subject_type="api_key",
        subject_id=name,
        data={"scopes": scope_list, "lookup_id": lookup_id},
    )
    return key, f"{KEY_PREFIX}{lookup_id}_{secret}"


def live_key_exists(session: Session, name: str) -> bool:
    """Whether a live (unrevoked) key has this name."""
    found = session.scalar(
        select(ApiKey.id).where(ApiKey.name == name, ApiKey.revoked_at.is_(None))
    )
    return found is not None


def list_keys(session: Session) -> Sequence[ApiKey]:
    """Every key, live and revoked, oldest first."""
    return session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)).all()


def revoke_key(session: Session, *, name: str, actor: str) -> ApiKey:
    """Revoke the live key with this name."""
    key = session.scalar(select(ApiKey).where(ApiKey.name == name, ApiKey.revoked_at.is_(None)))
    if key is None:
        raise NotFoundError(f"no live key named {name!r}", code="key_not_found")
    key.revoked_at = utcnow()
    audit.record(
        session,
        actor=actor,
        event="api_key.revoked",
        subject_type="api_key",
        subject_id=name,
        data={"lookup_id": key.lookup_id},
    )
    return key


def authenticate(conn: Connection, presented: str) -> Principal | None:
    """The principal a presented key belongs to, or None; compared in constant time."""
    match = _KEY_PATTERN.fullmatch(presented)
    if match is None:
        return None
    lookup_id, secret = match.groups()
    row = conn.execute(
        select(ApiKey.name, ApiKey.scopes, ApiKey.secret_sha256).where(
            ApiKey.lookup_id == lookup_id, ApiKey.revoked_at.is_(None)
        )
    ).one_or_none()
    if row is None:
        # Still hash and compare, so a miss costs what a hit costs.
        hmac.compare_digest(_sha256(secret), "0" * 64)
        return None
    if not hmac.compare_digest(_sha256(secret), row.secret_sha256):
        return None
    return Principal(key_name=row.name, scopes=frozenset(row.scopes))


def _validated_scopes(scopes: Iterable[str]) -> list[str]:
    requested = list(dict.fromkeys(scopes))
    known = {s.value for s in Scope}
    unknown = [s for s in requested if s not in known]
    if not requested or unknown:
        raise ValidationError(
            "invalid scopes",
            errors={"scope": [f"unknown scope {s!r}" for s in unknown] or ["at least one scope"]},
        )
    return requested


def _sha256(secret: str) -> str:
    # Keys carry 256 random bits, so a fast unsalted hash is enough: there is nothing to
    # brute-force, and a slow hash would cost every request.
    return hashlib.sha256(secret.encode()).hexdigest()
