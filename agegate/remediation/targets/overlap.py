"""Templates that reach the same store must never match one item for two accounts.

docs/purge-targets.md ("When two templates overlap") states the rule and its proof: every
pair of templates over one store is either disjoint (their item languages do not intersect,
decided on automata) or aligned (the same text before `{account_id}`, and runs that begin
alike up to a character no id of either target holds). Each kind describes its templates as
`Layout`s; the targets file is refused with one line per pair that is neither.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from itertools import combinations

from interegular.fsm import FSM

from agegate.remediation.targets.ids import ACCOUNT_ID_SHAPES, AccountIds, fsm_of, literal, shortest

ACCOUNT = "{account_id}"
# Names an id in a layout's regular expression, for the message's example (any id shape).
_ID_GROUP = r"(?P<id>[A-Za-z0-9][A-Za-z0-9._:-]*?)"


@dataclass(frozen=True)
class Piece:
    """A part of a template: literal text, a wildcard (as a regular expression), or the id."""

    text: str = ""
    regex: str | None = None  # a wildcard's regular expression
    is_id: bool = False


@dataclass(frozen=True)
class Layout:
    """One template of one target, as the overlap check reads it."""

    where: str  # e.g. "targets[0] (media): paths[1] 'uploads/{account_id}/'"
    store: Hashable  # templates with equal stores are compared
    pieces: tuple[Piece, ...]  # the whole item, from the store's root
    ids: AccountIds
    aligned_heads: bool = True  # whether equal text before the id means the id starts alike

    def items(self) -> FSM:
        """Every item this template can match, for every id its target accepts."""
        accepted = self.ids.pattern.ids if self.ids.pattern is not None else ACCOUNT_ID_SHAPES
        parts = [
            accepted if p.is_id else fsm_of(p.regex) if p.regex is not None else literal(p.text)
            for p in self.pieces
        ]
        items: FSM = FSM.concatenate(*parts)
        return items

    def head(self) -> str | None:
        """The text before the first `{account_id}`, if it fixes where the id starts."""
        text: list[str] = []
        for piece in self.pieces:
            if piece.is_id:
                return "".join(text)
            if piece.regex is not None and not self.aligned_heads:
                return None
            text.append(piece.text if piece.regex is None else f"\0{piece.regex}\0")
        return None

    def _after(self) -> tuple[Piece, ...]:
        """The pieces after the first `{account_id}`."""
        return self.pieces[[p.is_id for p in self.pieces].index(True) + 1 :]

    def run(self) -> str:
        """The literal text right after the first `{account_id}`, up to a wildcard or id."""
        text: list[str] = []
        for piece in self._after():
            if piece.is_id or piece.regex is not None:
                break
            text.append(piece.text)
        return "".join(text)

    def names_exact_items(self) -> bool:
        """Whether only literal text follows the first `{account_id}`."""
        return not any(p.is_id or p.regex is not None for p in self._after())

    def account_of(self, item: str) -> str | None:
        """Which id this template would read `item` as (for a message), if it can tell."""
        first = True
        regex = []
        for piece in self.pieces:
            if piece.is_id:
                regex.append(_ID_GROUP if first else r"[A-Za-z0-9][A-Za-z0-9._:-]*?")
                first = False
            else:
                regex.append(piece.regex if piece.regex is not None else re.escape(piece.text))
        match = re.fullmatch("".join(regex), item, re.DOTALL)
        return match.group("id") if match else None


def _aligned(first: Layout, second: Layout) -> bool:
    head = first.head()
    if head is None or head != second.head():
        return False
    if first.names_exact_items() and second.names_exact_items():
        return first.run() == second.run()  # the same text around the id: the same id
    for a, b in zip(first.run(), second.run(), strict=False):
        if a != b:
            return False
        if not (first.ids.may_contain(a) or second.ids.may_contain(a)):
            return True
    return False


def _overlap(first: Layout, second: Layout, languages: dict[int, FSM]) -> str | None:
    if _aligned(first, second):
        return None
    item = shortest(languages[id(first)] & languages[id(second)])
    if item is None:
        return None
    mine, theirs = first.account_of(item), second.account_of(item)
    whose = (
        f"a purge of {mine!r} would reach an item of {theirs!r}"
        if mine and theirs and mine != theirs
        else "one account's purge could reach another's item"
    )
    label = first.where.split(": ", 1)[0] + ": "  # the file's name, said once
    return (
        f"{first.where} overlaps {second.where.removeprefix(label)}: both match {item!r}, so "
        f"{whose}; give each "
        "layout a store of its own, or an account_id_pattern that keeps their ids apart"
    )


def overlap_problems(layouts: Sequence[Layout]) -> list[str]:
    """One line per pair of templates over one store that could meet for two accounts."""
    problems = []
    languages: dict[int, FSM] = {}
    for first, second in combinations(layouts, 2):
        if first.store != second.store:
            continue
        for layout in (first, second):
            if id(layout) not in languages:
                languages[id(layout)] = layout.items()
        if problem := _overlap(first, second, languages):
            problems.append(problem)
    return problems


def pieces_of(template: str, wildcard: Iterable[tuple[str, str]] = ()) -> tuple[Piece, ...]:
    """A template with no wildcards of its own, as pieces (`wildcard`: extra (text, regex))."""
    pieces: list[Piece] = []
    for index, text in enumerate(template.split(ACCOUNT)):
        if index:
            pieces.append(Piece(is_id=True))
        if text:
            pieces.append(Piece(text))
    pieces += [Piece(text, regex) for text, regex in wildcard]
    return tuple(pieces)
