"""What the remediation engine is built from, read and checked from the settings: the
receipt signer and the purge targets. Nothing here imports the engine or the metrics, so
gunicorn's master can check them before it forks (agegate/preflight.py)."""

from __future__ import annotations

import importlib
import os

from agegate.remediation.receipts import ReceiptSigner, load_signer
from agegate.remediation.targets.base import PurgeTarget
from agegate.remediation.targets.http import HttpRequest
from agegate.settings import Settings, SettingsError


def signer_of(settings: Settings) -> ReceiptSigner:
    """The receipt signer, or SettingsError saying what is wrong with the key."""
    try:
        signer = load_signer(settings.receipt_signing_key, settings.var_dir, settings.embedded)
    except ValueError as exc:
        raise SettingsError([f"AGEGATE_RECEIPT_SIGNING_KEY: {exc}"]) from None
    if signer is None:
        raise SettingsError(
            [
                "AGEGATE_RECEIPT_SIGNING_KEY: required outside the embedded default (PEM, "
                "PKCS#8 Ed25519; `agegate receipts new-key` prints one)"
            ]
        )
    return signer


def targets_of(
    settings: Settings,
) -> tuple[tuple[PurgeTarget, ...], dict[str, tuple[HttpRequest, ...]]]:
    """The purge targets and hooks, built; SettingsError lists what is wrong with them."""
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
