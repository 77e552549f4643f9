"""Kind `redis`: keys matching patterns such as `gen:history:{account_id}:*` (SCAN + UNLINK).

The account id is glob-escaped before it enters a pattern. Ids are validated and hold no glob
characters today, but escaping keeps the guarantee even if the id rule ever widens: an id
can never broaden the match to other accounts' keys.

A pattern with wildcards must say where the id ends (docs/purge-targets.md, "Exactness"):
wildcards on one side of `{account_id}` only, and the literal text between it and them
holding a delimiter, a character no accepted id contains. `gen:history:{account_id}:*`
needs an `account_id_pattern` whose ids cannot contain `:`; `gen:{account_id}/*` needs
nothing, no account id holding `/`. A wildcard right next to `{account_id}` is refused
(`gen:{account_id}*` would let `acct-1` match `acct-10`).

A step scans the keyspace once per pattern. The pass that counts an account's keys is kept
(for a few accounts, a few minutes) and the batches that follow UNLINK from it, so purging
never starts SCAN over from cursor 0; a batch without a pass to continue (a fresh worker, a
retry) makes one first.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from typing import Any

import redis
from redis.exceptions import RedisError

from agegate.remediation.targets.base import (
    PurgeContext,
    TargetConfigError,
    TargetError,
)
from agegate.remediation.targets.config import COMMON_KEYS, Fields, account_template_problem
from agegate.remediation.targets.ids import PATTERN_KEY, AccountIds, delimiter
from agegate.remediation.targets.overlap import Layout, Piece

SCAN_COUNT = 1000
KEPT_PASSES = 8  # accounts whose pass a target keeps between calls
PASS_SECONDS = 300.0  # a pass no batch continued for this long is stale: scan afresh
_ACCOUNT = "{account_id}"
_GLOB_SPECIAL = "\\*?[]"


def escape_glob(text: str) -> str:
    """`text` as a literal inside a Redis glob pattern."""
    return "".join("\\" + c if c in _GLOB_SPECIAL else c for c in text)


_WILD = object()  # `*`, `?` or a `[...]` class
_ID = object()  # `{account_id}`


def _tokens(pattern: str) -> list[object]:
    """The pattern as `_ID`, `_WILD` or one literal character each (escapes resolved)."""
    tokens: list[object] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if pattern.startswith(_ACCOUNT, index):
            tokens.append(_ID)
            index += len(_ACCOUNT)
        elif char == "\\" and index + 1 < len(pattern):
            tokens.append(pattern[index + 1])
            index += 2
        elif char in "*?[":
            tokens.append(_WILD)
            end = pattern.find("]", index + 2) if char == "[" else index
            index = len(pattern) if end < 0 else end + 1
        else:
            tokens.append(char)
            index += 1
    return tokens


def pattern_pieces(pattern: str) -> tuple[Piece, ...]:
    """The pattern for the overlap check, every wildcard read as `*` (wider than `?` or a
    class, so the check can only be stricter)."""
    return tuple(
        Piece(is_id=True)
        if token is _ID
        else Piece(regex=".*")
        if token is _WILD
        else Piece(str(token))
        for token in _tokens(pattern)
    )


def pattern_check(pattern: str, ids: AccountIds | None) -> tuple[str | None, str | None]:
    """(why `pattern` could reach another account's keys or None, the delimiter it relies on).

    With `ids` None (the target's account_id_pattern is itself wrong) only the pattern's own
    shape is checked.
    """
    if problem := account_template_problem(pattern):
        return problem, None
    tokens = _tokens(pattern)
    for index, token in enumerate(tokens):
        if token is not _ID:
            continue
        following = tokens[index + 1] if index + 1 < len(tokens) else None
        if following is _WILD:
            return (
                f"{pattern!r}: a wildcard right after {_ACCOUNT} would match other accounts",
                None,
            )
        if following is _ID:
            return f"{pattern!r}: two {_ACCOUNT} side by side cannot be told apart", None
        if index and tokens[index - 1] is _WILD:
            return (
                f"{pattern!r}: a wildcard right before {_ACCOUNT} would match other accounts",
                None,
            )
    if _WILD not in tokens:  # it names exact keys: one per account
        return None, None
    first = tokens.index(_ID)
    before, after = tokens[:first], tokens[first + 1 :]
    if _WILD in before and _WILD in after:
        return (
            f"{pattern!r}: wildcards both before and after {_ACCOUNT} let an id match inside "
            f"another account's keys; keep the text before {_ACCOUNT} literal"
        ), None
    if _WILD in before and tokens.count(_ID) > 1:
        return (
            f"{pattern!r}: with a wildcard before it, {_ACCOUNT} may appear only once; "
            "keep the text before the first one literal"
        ), None
    wild_before = _WILD in before
    # The literal run between the id and the wildcards, which must say where the id ends.
    if wild_before:
        run = before[len(before) - before[::-1].index(_WILD) :]
    else:
        run = after[: min(after.index(x) for x in (_WILD, _ID) if x in after)]
    if ids is None:
        return None, None
    return delimiter(pattern, "".join(str(c) for c in run), ids.pattern, before=wild_before)


class RedisTarget:
    kind = "redis"

    def __init__(
        self, name: str, url: str, patterns: list[str], pool_size: int, ids: AccountIds
    ) -> None:
        self.name = name
        self.patterns = patterns
        self.ids = ids
        self.layouts: tuple[Layout, ...] = ()
        pool = redis.BlockingConnectionPool.from_url(
            url,
            max_connections=pool_size,
            timeout=5,
            socket_timeout=5,
            socket_connect_timeout=5,
        )
        # from_pool: closing the client also disconnects the pool it owns.
        self.client = redis.Redis.from_pool(pool)
        # Per account, the keys the last pass found that no batch has unlinked yet, and when
        # that pass (or the batch that last went on from it) ended.
        self._passes: OrderedDict[str, tuple[float, deque[bytes]]] = OrderedDict()

    @classmethod
    def from_config(cls, config: dict[str, Any], location: str) -> RedisTarget:
        allowed = (*COMMON_KEYS, "url", "patterns", "pool_size", PATTERN_KEY)
        fields = Fields(config, location, allowed)
        url = fields.string("url")
        if url and not url.startswith(("redis://", "rediss://", "unix://")):
            fields.problem("url: not a Redis URL (expected redis://host:port/db)")
        pool_size = fields.integer("pool_size", 2, 1, 32)
        ids = fields.account_ids()
        delimiters = []
        for index, pattern in enumerate(fields.strings("patterns")):
            problem, delimiter = pattern_check(pattern, ids)
            if problem:
                fields.problem(f"patterns[{index}]: {problem}")
            if delimiter:
                delimiters.append(delimiter)
        fields.raise_problems()
        assert ids is not None  # a wrong pattern is a problem, raised above
        try:
            target = cls(
                config["name"], url, list(config["patterns"]), pool_size, ids.relying_on(delimiters)
            )
        except ValueError:  # never echo the URL: it may carry a password
            raise TargetConfigError(f"{location}: url: not a valid Redis URL") from None
        store = target.database()
        target.layouts = tuple(
            Layout(f"{location}: patterns[{i}] {p!r}", store, pattern_pieces(p), target.ids, False)
            for i, p in enumerate(target.patterns)
        )
        return target

    def database(self) -> tuple[str, ...]:
        """Which Redis database this is, as the URL names it (the overlap check's store)."""
        kwargs = self.client.connection_pool.connection_kwargs
        if "path" in kwargs:
            return ("redis", "unix", str(kwargs["path"]), str(kwargs.get("db", 0)))
        host = str(kwargs.get("host", "localhost")).lower()
        host = "127.0.0.1" if host in ("localhost", "::1") else host
        return ("redis", host, str(kwargs.get("port", 6379)), str(kwargs.get("db", 0)))

    def _matches(self, account_id: str) -> list[str]:
        escaped = escape_glob(self.ids.checked(account_id))
        return [p.replace(_ACCOUNT, escaped) for p in self.patterns]

    def _pass(self, account_id: str) -> deque[bytes]:
        """Every matching key once (patterns may overlap): one SCAN pass per pattern."""
        found: dict[bytes, None] = {}
        for match in self._matches(account_id):
            for key in self.client.scan_iter(match=match, count=SCAN_COUNT):
                found[key] = None
        return deque(found)

    def _keep(self, account_id: str, keys: deque[bytes]) -> None:
        self._passes[account_id] = (time.monotonic(), keys)
        self._passes.move_to_end(account_id)
        while len(self._passes) > KEPT_PASSES:
            self._passes.popitem(last=False)

    def check(self) -> None:
        try:
            self.client.ping()
        except RedisError as exc:
            raise TargetError(f"{self.name}: {type(exc).__name__}: {exc}") from None

    def count(self, account_id: str) -> int:
        self._matches(account_id)  # validate before any round trip
        try:
            keys = self._pass(account_id)
        except RedisError as exc:
            raise TargetError(f"{self.name}: {type(exc).__name__}: {exc}") from None
        self._keep(account_id, keys)  # the purge that follows goes on from this pass
        return len(keys)

    def purge_batch(self, account_id: str, limit: int, context: PurgeContext) -> int:
        self._matches(account_id)
        try:
            kept_at, pending = self._passes.pop(account_id, (0.0, None))
            if pending is None or time.monotonic() - kept_at > PASS_SECONDS:
                pending = self._pass(account_id)
            while pending:
                batch = [pending.popleft() for _ in range(min(limit, len(pending)))]
                removed = int(self.client.unlink(*batch))
                if removed:
                    self._keep(account_id, pending)  # emptied, it answers the next call: 0
                    return removed
                # Every key of the batch expired since the pass: go on to the next batch.
            return 0
        except RedisError as exc:  # the pass is dropped: a retry scans afresh
            raise TargetError(f"{self.name}: {type(exc).__name__}: {exc}") from None

    def close(self) -> None:
        self.client.close()
