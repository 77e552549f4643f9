"""Wire the remediation engine into an app: targets, receipt signer, engine settings."""

from __future__ import annotations

from datetime import timedelta

from flask import Flask

from agegate.flags.models import Confidence
from agegate.remediation import startup
from agegate.remediation.engine import Worker
from agegate.remediation.receipts import ReceiptSigner
from agegate.remediation.workflow import EngineConfig
from agegate.settings import Settings


def init_app(app: Flask, settings: Settings, version: str) -> None:
    signer = startup.signer_of(settings)
    app.extensions["agegate.signer"] = signer
    _register_key(app, signer)
    targets, hooks = startup.targets_of(settings)
    app.extensions["agegate.targets"] = targets
    app.extensions["agegate.engine_config"] = EngineConfig(
        grace={
            Confidence.SUSPECTED: timedelta(seconds=settings.grace_suspected_seconds),
            Confidence.CONFIRMED: timedelta(seconds=settings.grace_confirmed_seconds),
        },
        batch_size=settings.purge_batch_size,
        max_attempts=settings.max_attempts,
        backoff_cap=timedelta(seconds=settings.retry_backoff_cap_seconds),
        version=version,
        hooks=hooks,
    )


def make_worker(app: Flask) -> Worker:
    """A worker bound to this app's database, store, targets and signer."""
    signer: ReceiptSigner = app.extensions["agegate.signer"]
    settings: Settings = app.extensions["agegate.settings"]
    return Worker(
        app.extensions["agegate.engine"],
        app.extensions["agegate.store"],
        app.extensions["agegate.targets"],
        signer,
        app.extensions["agegate.engine_config"],
        lease=timedelta(seconds=settings.lease_seconds),
    )


def _register_key(app: Flask, signer: ReceiptSigner) -> None:
    """Record the signing key's public half once, so the JWKS keeps it after a rotation."""
    from sqlalchemy.exc import IntegrityError, OperationalError
    from sqlalchemy.orm import Session

    from agegate.audit import service as audit
    from agegate.db import utcnow
    from agegate.remediation.models import ReceiptKey

    try:
        with Session(app.extensions["agegate.engine"]) as session:
            if session.get(ReceiptKey, signer.kid) is not None:
                return
            session.add(ReceiptKey(kid=signer.kid, x=signer.x, first_used_at=utcnow()))
            audit.record(
                session,
                actor="system:start",
                event="receipt_key.registered",
                subject_type="receipt_key",
                subject_id=signer.kid,
                data={"x": signer.x},
            )
            session.commit()
    except IntegrityError:  # another process registered it at the same moment
        return
    except OperationalError:  # the database is down at start: the next start registers it
        return
