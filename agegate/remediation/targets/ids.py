"""Which account ids a purge target accepts, and whether its templates can tell them apart.

A template such as `gen:history:{account_id}:*` relies on a *delimiter*, the `:` after the id:
the items of account `a` are told from those of `a:b` only if no id can contain that `:`.
Account ids may contain `. _ : -` (agegate.accounts), so a template whose delimiter is one
of those is ambiguous unless the target declares `account_id_pattern`, a regular expression
that the platform's ids for this store match in full and that cannot produce the delimiter.

Whether it can is decided on the patterns' finite automata (interegular), not by trying
examples: the answer holds for every id, and when it is "yes" the automaton gives the
shortest offending id, which the refusal quotes. At purge time a target then accepts an id
only if it is an account id, matches the pattern and holds none of the delimiters its
templates rely on; the last test repeats the automaton's verdict with the id in hand, so
that a difference between Python's regular expressions and the automaton's reading of the
same text can never let an ambiguous id through.
"""

from __future__ import annotations

import functools
import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import interegular
from interegular.fsm import FSM, anything_else

from agegate.accounts import ACCOUNT_ID_REGEX, ACCOUNT_ID_RULE, is_valid_account_id

PATTERN_KEY = "account_id_pattern"
# The automaton library reads some lookarounds loosely: refused, so that what is checked at
# start-up is what Python matches.
_LOOKAROUNDS = ("(?=", "(?!", "(?<=", "(?<!")


class AccountIdRefused(ValueError):
    """A valid account id that this target will not purge: it cannot be told apart there."""


@functools.cache
def fsm_of(regex: str) -> FSM:
    """The automaton of a regular expression (interegular reads Python's syntax)."""
    return interegular.parse_pattern(regex).to_fsm()


def literal(text: str) -> FSM:
    return fsm_of(re.escape(text))


def _any_with(character: str) -> FSM:
    return fsm_of(f".*{re.escape(character)}.*")


def shortest(fsm: FSM) -> str | None:
    """The automaton's shortest string, or None if it accepts none.

    A breadth-first search over states, each visited once (FSM.strings() enumerates strings,
    one per symbol, which takes minutes on a path template). Each step takes the smallest
    symbol of its transition; "any other character" is shown as `x`.
    """
    symbols = {  # letters and digits first: they read best in a message
        key: min((s for s in group if s is not anything_else), default="x", key=_readable)
        for key, group in fsm.alphabet.by_transition.items()
    }
    came_from: dict[Any, tuple[Any, str] | None] = {fsm.initial: None}
    queue = deque([fsm.initial])
    while queue:
        state = queue.popleft()
        if state in fsm.finals:
            text = []
            step = came_from[state]
            while step is not None:
                state, symbol = step
                text.append(symbol)
                step = came_from[state]
            return "".join(reversed(text))
        transitions = fsm.map.get(state, {}).items()
        for key, following in sorted(transitions, key=lambda t: _readable(symbols[t[0]])):
            if following not in came_from:
                came_from[following] = (state, symbols[key])
                queue.append(following)
    return None


def _readable(symbol: str) -> tuple[bool, str]:
    return not symbol.isalnum(), symbol


ACCOUNT_IDS = fsm_of(ACCOUNT_ID_REGEX)
# The same without the length bound: 128 states fewer, for checks where a superset only makes
# them stricter (overlap.py).
ACCOUNT_ID_SHAPES = fsm_of(ACCOUNT_ID_REGEX.removesuffix("{0,127}") + "*")


@dataclass(frozen=True)
class IdPattern:
    """A target's `account_id_pattern`, read against the global account id rule."""

    text: str
    regex: re.Pattern[str]
    ids: FSM  # the account ids the pattern accepts (pattern ∩ global rule)

    @classmethod
    def parse(cls, text: str) -> IdPattern:
        """Raise ValueError saying what is wrong with `text` and how to write it."""
        try:
            regex = re.compile(text)
        except re.error as exc:
            raise ValueError(f"{text!r} is not a regular expression ({exc})") from None
        try:
            if any(look in text for look in _LOOKAROUNDS):
                raise ValueError("lookarounds are not supported")
            fsm = fsm_of(text)
        except Exception as exc:  # interegular's Unsupported, or a construct it cannot read
            raise ValueError(
                f"{text!r}: {exc}; write a plain regular expression (character classes, groups, "
                "alternation, repetition) without anchors, lookarounds or back-references: "
                "it is matched in full"
            ) from None
        ids = fsm & ACCOUNT_IDS
        if ids.empty():
            raise ValueError(f"{text!r} accepts no account id ({ACCOUNT_ID_RULE})")
        if ids.equivalent(ACCOUNT_IDS):
            raise ValueError(
                f"{text!r} accepts every account id, so it narrows nothing: write the shape of "
                "this platform's ids, or remove it"
            )
        return cls(text, regex, ids)

    def example_with(self, character: str) -> str | None:
        """The shortest id this pattern accepts that contains `character`, or None."""
        return shortest(self.ids & _any_with(character))


def global_example_with(character: str) -> str | None:
    """The shortest account id (global rule) that contains `character`, or None."""
    return shortest(ACCOUNT_IDS & _any_with(character))


def delimiter(
    template: str, run: str, pattern: IdPattern | None, before: bool = False
) -> tuple[str | None, str | None]:
    """(why `template` is ambiguous or None, the delimiter it relies on).

    `run` is the literal text between `{account_id}` and the nearest wildcard on the side
    where the wildcards are (`before`: they precede the id). An id is told apart from a
    longer one exactly when the run holds a character no accepted id contains: a longer id
    would have to contain the run's first characters, up to that one (docs/purge-targets.md
    has the proof). That character is the delimiter.
    """
    for char in run:
        if (global_example_with(char) if pattern is None else pattern.example_with(char)) is None:
            return None, char
    if pattern is None:
        joint = run[-1] if before else run[0]
        short, longer = ("b", f"a{joint}b") if before else ("a", f"a{joint}b")
        return (
            f"{template!r} is ambiguous: account ids may contain {run!r}, so a purge of "
            f"{short!r} would also reach the items of {longer!r}; declare {PATTERN_KEY} (a "
            f"regular expression for this platform's ids, which cannot contain {joint!r}) or "
            f"put a character no account id contains next to {{account_id}}"
        ), None
    joint = run[-1] if before else run[0]
    example = pattern.example_with(joint)
    return (
        f"{template!r} is ambiguous: {PATTERN_KEY} {pattern.text!r} accepts ids that may "
        f"contain {run!r}, the text next to {{account_id}} (such as {example!r}); narrow the "
        f"pattern so that its ids cannot contain {joint!r}"
    ), None


@dataclass(frozen=True)
class AccountIds:
    """What a target accepts: account ids, in its pattern if any, without its delimiters."""

    pattern: IdPattern | None = None
    delimiters: frozenset[str] = frozenset()
    source: str = PATTERN_KEY  # where the pattern comes from, for the refusal

    def may_contain(self, character: str) -> bool:
        """Whether some id this target accepts holds `character`."""
        if self.pattern is None:
            return global_example_with(character) is not None
        return self.pattern.example_with(character) is not None

    def relying_on(self, delimiters: Iterable[str]) -> AccountIds:
        return AccountIds(self.pattern, self.delimiters | frozenset(delimiters), self.source)

    def refusal(self, account_id: str) -> str | None:
        """Why this (valid) account id is refused here, or None."""
        if self.pattern is not None and self.pattern.regex.fullmatch(account_id) is None:
            return f"account id {account_id!r} does not match {self.source} {self.pattern.text!r}"
        held = sorted(c for c in self.delimiters if c in account_id)
        if held:
            return (
                f"account id {account_id!r} contains {held[0]!r}, which this target's templates "
                "use to tell accounts apart"
            )
        return None

    def checked(self, account_id: str) -> str:
        """Every kind calls this before an account id reaches a query, a path or a pattern."""
        if not is_valid_account_id(account_id):
            raise ValueError(f"not an account id ({ACCOUNT_ID_RULE})")
        if reason := self.refusal(account_id):
            raise AccountIdRefused(reason)
        return account_id


ANY_ACCOUNT = AccountIds()
