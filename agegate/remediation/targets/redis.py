"""Kind `redis`: keys matching patterns such as `gen:history:{account_id}:*` (SCAN + UNLINK).

The account id is glob-escaped before it enters a pattern. Ids are validated and hold no glob
characters today, but escaping keeps the guarantee even if the id rule ever widens: an id
can never broaden the match to other accounts' keys. A pattern must not put a wildcard right
next to `{account_id}` (`gen:{account_id}*` would let `acct-1` match `acct-10`).

Known limit: account ids may contain `:`, so with `gen:{account_id}:*` the keys of an
account `a:b` also match the pattern of account `a`. Only the key layout can rule this out.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import redis
from redis.exceptions import RedisError

from agegate.remediation.targets.base import (
    PurgeContext,
    TargetConfigError,
    TargetError,
    checked_account_id,
)
from agegate.remediation.targets.config import COMMON_KEYS, Fields, account_template_problem

SCAN_COUNT = 1000
_ACCOUNT = "{account_id}"
_GLOB_SPECIAL = "\\*?[]"


def escape_glob(text: str) -> str:
    """`text` as a literal inside a Redis glob pattern."""
    return "".join("\\" + c if c in _GLOB_SPECIAL else c for c in text)


def pattern_problem(pattern: str) -> str | None:
    if problem := account_template_problem(pattern):
        return problem
    for piece in pattern.split(_ACCOUNT)[1:]:
        if piece[:1] in ("*", "?", "["):
            return f"{pattern!r}: a wildcard right after {_ACCOUNT} would match other accounts"
    for piece in pattern.split(_ACCOUNT)[:-1]:
        if piece[-1:] in ("*", "?", "]"):
            return f"{pattern!r}: a wildcard right before {_ACCOUNT} would match other accounts"
    return None


class RedisTarget:
    kind = "redis"

    def __init__(self, name: str, url: str, patterns: list[str], pool_size: int) -> None:
        self.name = name
        self.patterns = patterns
        pool = redis.BlockingConnectionPool.from_url(
            url,
            max_connections=pool_size,
            timeout=5,
            socket_timeout=5,
            socket_connect_timeout=5,
        )
        # from_pool: closing the client also disconnects the pool it owns.
        self.client = redis.Redis.from_pool(pool)

    @classmethod
    def from_config(cls, config: dict[str, Any], location: str) -> RedisTarget:
        fields = Fields(config, location, (*COMMON_KEYS, "url", "patterns", "pool_size"))
        url = fields.string("url")
        if url and not url.startswith(("redis://", "rediss://", "unix://")):
            fields.problem("url: not a Redis URL (expected redis://host:port/db)")
        pool_size = fields.integer("pool_size", 2, 1, 32)
        for index, pattern in enumerate(fields.strings("patterns")):
            if problem := pattern_problem(pattern):
                fields.problem(f"patterns[{index}]: {problem}")
        fields.raise_problems()
        try:
            return cls(config["name"], url, list(config["patterns"]), pool_size)
        except ValueError:  # never echo the URL: it may carry a password
            raise TargetConfigError(f"{location}: url: not a valid Redis URL") from None

    def _matches(self, account_id: str) -> list[str]:
        escaped = escape_glob(checked_account_id(account_id))
        return [p.replace(_ACCOUNT, escaped) for p in self.patterns]

    def _keys(self, account_id: str) -> Iterator[bytes]:
        """Every matching key once (patterns may overlap), as SCAN finds them."""
        seen: set[bytes] = set()
        for match in self._matches(account_id):
            for key in self.client.scan_iter(match=match, count=SCAN_COUNT):
                if key not in seen:
                    seen.add(key)
                    yield key

    def check(self) -> None:
        try:
            self.client.ping()
        except RedisError as exc:
            raise TargetError(f"{self.name}: {type(exc).__name__}: {exc}") from None

    def count(self, account_id: str) -> int:
        self._matches(account_id)  # validate before any round trip
        try:
            return sum(1 for _ in self._keys(account_id))
        except RedisError as exc:
            raise TargetError(f"{self.name}: {type(exc).__name__}: {exc}") from None

    def purge_batch(self, account_id: str, limit: int, context: PurgeContext) -> int:
        self._matches(account_id)
        try:
            while True:
                keys: list[bytes] = []
                for key in self._keys(account_id):
                    keys.append(key)
                    if len(keys) >= limit:
                        break
                if not keys:
                    return 0
                removed = int(self.client.unlink(*keys))
                # All found keys expired before UNLINK: look again rather than report "none left".
                if removed or len(keys) < limit:
                    return removed
        except RedisError as exc:
            raise TargetError(f"{self.name}: {type(exc).__name__}: {exc}") from None

    def close(self) -> None:
        self.client.close()
