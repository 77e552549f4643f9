"""Wire the remediation engine into an app: targets, receipt signer, engine settings."""

from __future__ import annotations

import importlib
import os
from datetime import timedelta

from flask import Flask

from agegate.flags.models import Confidence
from agegate.remediation.engine import Worker
from agegate.remediation.receipts import ReceiptSigner, load_signer
from agegate.remediation.targets.base import PurgeTarget
from agegate.remediation.targets.http import HttpRequest
from agegate.remediation.workflow import EngineConfig
from agegate.settings import Settings, SettingsError


def init_app(app: Flask, settings: Settings, version: str) -> None:
    try:
        signer = load_signer(settings.receipt_signing_key, settings.var_dir, settings.embedded)
    except ValueError as exc:
        raise SettingsError([f"AGEGATE_RECEIPT_SIGNING_KEY: {exc}"]) from None
    if signer is None:
        raise SettingsError(
            [
                "AGEGATE_RECEIPT_SIGNING_KEY: required outside the embedded default (PEM, PKCS#8 Ed25519)"
            ]
        )
    app.extensions["agegate.signer"] = signer
    _register_key(app, signer)
    targets, hooks = _targets(settings)
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


def _targets(
    settings: Settings,
) -> tuple[tuple[PurgeTarget, ...], dict[str, tuple[HttpRequest, ...]]]:
    path = settings.targets_file
    if path is None and settings.embedded:
        # The embedded default purges the demo platform, made on first start.
        from agegate import demo

        path = demo.targets_file(settings.var_dir)
        if not path.exists():
            demo.seed(settings.var_dir)
    if path is None:
        return (), {}
    for module in settings.target_plugins:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise SettingsError(
                [f"AGEGATE_TARGET_PLUGINS: cannot import {module!r} ({exc})"]
            ) from None
    from agegate.remediation.targets.base import TargetConfigError
    from agegate.remediation.targets.config import load_targets

    try:
        loaded = load_targets(path, os.environ)
        hooks = {
            phase: tuple(HttpRequest.from_config(raw, f"hooks.{phase}") for raw in entries)
            for phase, entries in loaded.hooks.items()
        }
    except TargetConfigError as exc:
        raise SettingsError([f"AGEGATE_TARGETS_FILE: {exc}"]) from None
    return loaded.targets, hooks


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
