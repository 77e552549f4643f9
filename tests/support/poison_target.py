"""A purge target kind for drills: `poison`, whose count raises for one account.

While the file named by `marker` exists, counting `account` raises a RuntimeError, an error
no target should raise (not a TargetError): the workflow step that counts it fails
unexpectedly. Other accounts count zero. Loaded into a worker with
AGEGATE_TARGET_PLUGINS=tests.support.poison_target.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agegate.remediation.targets.base import PurgeContext, checked_account_id
from agegate.remediation.targets.config import register_kind


class PoisonTarget:
    kind = "poison"

    def __init__(self, name: str, account: str, marker: Path) -> None:
        self.name, self.account, self.marker = name, account, marker

    @classmethod
    def from_config(cls, config: dict[str, Any], location: str) -> PoisonTarget:
        return cls(config["name"], config["account"], Path(config["marker"]))

    def check(self) -> None:
        return None

    def count(self, account_id: str) -> int:
        if checked_account_id(account_id) == self.account and self.marker.exists():
            raise RuntimeError("poisoned count (drill)")
        return 0

    def purge_batch(self, account_id: str, limit: int, context: PurgeContext) -> int:
        return 0


register_kind("poison", PoisonTarget.from_config)
