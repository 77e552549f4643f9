"""Idempotency-Key: the first answer to a request is stored and replayed for its repeats."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from agegate.errors import ValidationError
from agegate.remediation.models import IdempotencyRecord

Answer = tuple[int, dict[str, Any]]


def run_once(
    session: Session,
    *,
    key_name: str,
    idempotency_key: str | None,
    request: dict[str, Any],
    run: Callable[[], Answer],
    now: datetime,
) -> Answer:
    """`run()` once per (API key, Idempotency-Key); a repeat gets the first answer back."""
    if idempotency_key is None:
        return run()
    if not 1 <= len(idempotency_key) <= 255 or not idempotency_key.isprintable():
        raise ValidationError(
            "the Idempotency-Key header must be 1-255 printable characters",
            errors={"Idempotency-Key": ["1-255 printable characters"]},
            code="invalid_idempotency_key",
        )
    digest = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()
    stored = session.get(IdempotencyRecord, (key_name, idempotency_key))
    if stored is not None:
        return _replay(stored, digest)
    status, body = run()
    try:
        with session.begin_nested():
            session.add(
                IdempotencyRecord(
                    key_name=key_name,
                    idempotency_key=idempotency_key,
                    request_sha256=digest,
                    status=status,
                    body=body,
                    created_at=now,
                )
            )
    except IntegrityError:
        # The same key arrived concurrently and its request committed first: undo ours
        # entirely and answer as that one did.
        session.rollback()
        first = session.get(IdempotencyRecord, (key_name, idempotency_key))
        if first is None:
            raise
        return _replay(first, digest)
    return status, body


def _replay(stored: IdempotencyRecord, digest: str) -> Answer:
    if stored.request_sha256 != digest:
        raise ValidationError(
            "this Idempotency-Key was used for a different request",
            errors={"Idempotency-Key": ["already used with another body"]},
            code="idempotency_key_reused",
        )
    return stored.status, stored.body
