"""The one small interface every purge target kind implements (docs/purge-targets.md).

Counts are items as each kind sees them: rows for `sql`, files for `files`, keys for
`redis`, object versions for `s3`, and what the service reports for `http`. Every method
must be safe to call again after a crash: a batch that was half done is simply found again
by the next count.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from agegate.accounts import ACCOUNT_ID_RULE, is_valid_account_id
from agegate.remediation.targets.ids import AccountIds


class TargetError(Exception):
    """A target could not do what was asked (unreachable, refused); the step retries,
    not before `retry_after` seconds when the target was told when (HTTP Retry-After)."""

    def __init__(self, message: str, *, retry_after: float = 0.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TargetConfigError(Exception):
    """The targets file is wrong; the message says where and why (start-up refuses)."""


@dataclass(frozen=True)
class PurgeContext:
    """Who is purging and how far it got: lets a kind build idempotency keys (`http`: case
    and target) and know what it already did for this case."""

    case_id: str
    purged: int = 0  # what this target has purged for the case so far
    started_at: datetime | None = None  # when purging became due (deadlines count from here)


class PurgeTarget(Protocol):
    name: str
    kind: str

    def check(self) -> None:
        """Raise TargetError if the target cannot be reached or does not match its config."""

    def count(self, account_id: str) -> int:
        """How many of the account's items the target holds now."""

    def purge_batch(self, account_id: str, limit: int, context: PurgeContext) -> int:
        """Delete at most `limit` of the account's items; return how many went (0: none left)."""


def checked_account_id(account_id: str) -> str:
    """Every kind calls this before an account id reaches a query, a path or a pattern."""
    if not is_valid_account_id(account_id):
        raise ValueError(f"not an account id ({ACCOUNT_ID_RULE})")
    return account_id


def refusal(target: PurgeTarget, account_id: str) -> str | None:
    """Why `target` will not purge this valid account id, or None: an id outside its
    `account_id_pattern`, or holding a delimiter its templates rely on. The kinds that match
    templates in a store (`files`, `s3`, `redis`) keep that rule as `ids`."""
    ids = getattr(target, "ids", None)
    return ids.refusal(account_id) if isinstance(ids, AccountIds) else None
