"""Load the shipped table (agegate/data/jurisdictions.csv) on the first start."""

from __future__ import annotations

import logging

from agegate.db import utcnow
from agegate.errors import ConflictError
from agegate.extensions import db
from agegate.jurisdictions import files, service
from agegate.settings import config_dir

SEED_ACTOR = "system:first-start"
log = logging.getLogger(__name__)


def seed_shipped_table() -> None:
    """Import the shipped table if the table is empty (needs an app context)."""
    path = config_dir() / "jurisdictions.csv"
    rules = files.parse_rules(files.read_csv(path.read_text(encoding="utf-8")))
    with db.new_session() as session:
        try:
            seeded = service.seed_if_empty(
                session,
                rules,
                actor=SEED_ACTOR,
                reason=f"shipped table {path.name} loaded on first start",
                now=utcnow(),
            )
            session.commit()
        except ConflictError:
            # Another process seeded it at the same moment: the table is there.
            session.rollback()
            return
    if seeded:
        log.info("jurisdictions: loaded %d shipped rules from %s", len(rules), path)
