"""The audit anchors that receipts carry, read from agegate's database and from receipts
kept elsewhere (the platform keeps every receipt it was given), for `agegate audit verify`.

A receipt's anchor is the audit head at its issue, inside the signed body. An intruder who
cuts the chain's tail and puts its head back can delete the receipts in agegate's database
too, but not the copies the platform holds: those are read from a folder, and each must be
signed by a key agegate published.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from agegate.audit.service import Anchor
from agegate.remediation.models import Receipt
from agegate.remediation.receipts import verify

HASH_CHARS = frozenset("0123456789abcdef")


def stored_anchors(session: Session) -> Generator[Anchor]:
    """The anchors of the receipts in agegate's database, in chain order. Close it when
    done (verify may stop early): that releases PostgreSQL's server-side cursor."""
    rows = session.execute(
        select(Receipt.audit_seq, Receipt.audit_hash, Receipt.case_id)
        .where(Receipt.audit_seq.is_not(None))
        .order_by(Receipt.audit_seq, Receipt.case_id)
        .execution_options(yield_per=1000)
    )
    try:
        for seq, anchor_hash, case_id in rows:
            if seq is not None:  # as the query says; this tells the type checker
                # A hash gone missing from the row mismatches, and is reported.
                yield Anchor(seq, anchor_hash or "", f"the receipt of case {case_id}")
    finally:
        rows.close()


def stored_without_anchor(session: Session) -> int:
    """Receipts issued before receipts carried anchors."""
    return (
        session.scalar(select(func.count()).select_from(Receipt).where(Receipt.audit_seq.is_(None)))
        or 0
    )


@dataclass
class Folder:
    """What a folder of kept receipts holds: anchors in chain order, the receipts without
    one, and every file that is not a receipt agegate signed."""

    path: Path
    read: int = 0
    anchors: list[Anchor] = field(default_factory=list)
    without_anchor: int = 0
    problems: list[str] = field(default_factory=list)


def read_folder(path: Path, key_set: dict[str, Any]) -> Folder:
    """Every `*.json` file under `path` (at any depth): a signed receipt, as
    `GET /v1/cases/{id}/receipt` gave it."""
    folder = Folder(path)
    if not path.is_dir():
        folder.problems.append(f"{path}: not a folder")
        return folder
    for file in sorted(path.rglob("*.json")):
        folder.read += 1
        problem = _read(file, key_set, folder)
        if problem:
            folder.problems.append(f"{file}: {problem}")
    if folder.read == 0:
        folder.problems.append(f"{path}: no receipts (*.json files) in it")
    folder.anchors.sort()
    return folder


def _read(file: Path, key_set: dict[str, Any], folder: Folder) -> str | None:
    try:
        document = json.loads(file.read_bytes())
    except (OSError, ValueError, RecursionError) as exc:
        return f"not readable as JSON ({type(exc).__name__})"
    if not isinstance(document, dict) or not verify(document, key_set):
        return "not a receipt signed by a key agegate published"
    receipt = document["receipt"]
    anchor = receipt.get("audit_anchor")
    if anchor is None:
        folder.without_anchor += 1
        return None
    seq = anchor.get("seq") if isinstance(anchor, dict) else None
    anchor_hash = anchor.get("hash") if isinstance(anchor, dict) else None
    if (
        isinstance(seq, bool)
        or not isinstance(seq, int)
        or not isinstance(anchor_hash, str)
        or len(anchor_hash) != 64
        or not set(anchor_hash) <= HASH_CHARS
    ):
        return "its audit_anchor is not {seq, hash}"
    folder.anchors.append(
        Anchor(seq, anchor_hash, f"the receipt of case {receipt.get('case_id')} ({file})")
    )
    return None
