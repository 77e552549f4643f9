"""Kind `files`: files under path templates in a directory (`uploads/{account_id}/`).

A template ending in `/` means the whole tree at that path; otherwise its last part names
files (a glob such as `*.mp4`, or an exact name). Items are non-directories: regular files,
and symbolic links, which are removed as links and never followed, so a link planted in an
account's directory can neither widen a purge to another account nor reach outside the root.
A symbolic link where a shared directory (above `{account_id}`) should be is refused loudly:
ignoring it would report an account clean while its files still exist.

Directories at or below the `{account_id}` part of a template are the account's own and are
removed once empty; directories above it are shared and never touched, nor is the root.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import re
import secrets
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from agegate.remediation.targets.base import PurgeContext, TargetError
from agegate.remediation.targets.config import COMMON_KEYS, Fields, account_template_problem
from agegate.remediation.targets.ids import PATTERN_KEY, AccountIds
from agegate.remediation.targets.overlap import Layout, Piece

_GLOB_CHARS = "*?["
_ACCOUNT = "{account_id}"


@dataclass(frozen=True)
class PathTemplate:
    text: str
    parts: tuple[str, ...]
    tree: bool  # trailing "/": everything under the path
    account_part: int  # index of the first part holding {account_id}

    @classmethod
    def parse(cls, text: str) -> PathTemplate:
        """Raise ValueError saying why `text` could escape the root or reach other accounts."""
        if problem := account_template_problem(text):
            raise ValueError(problem)
        tree = text.endswith("/")
        parts = tuple(text[:-1].split("/") if tree else text.split("/"))
        if text.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"{text!r}: must be relative to root, without '.', '..' or '//'")
        if any("**" in p for p in parts):
            raise ValueError(f"{text!r}: '**' is not supported; end the path with '/' for a tree")
        account_part = next(i for i, p in enumerate(parts) if _ACCOUNT in p)
        # The account's own part is matched literally, so `acct-1` never matches `acct-10`.
        if any(c in parts[account_part].replace(_ACCOUNT, "") for c in _GLOB_CHARS + "]"):
            raise ValueError(
                f"{text!r}: the part holding {_ACCOUNT} cannot contain glob characters"
            )
        return cls(text, parts, tree, account_part)

    def pieces(self, root: Path) -> tuple[Piece, ...]:
        """The template from the file system's root, for the overlap check. A glob stays
        within its part (`[...]` read as any one character: wider, so only stricter)."""
        pieces = [Piece(f"{root}/".replace("//", "/"))]
        for index, part in enumerate(self.parts):
            if index:
                pieces.append(Piece("/"))
            for number, text in enumerate(part.split(_ACCOUNT)):
                if number:
                    pieces.append(Piece(is_id=True))
                if text and any(c in text for c in _GLOB_CHARS):
                    pieces.append(Piece(text, _glob_regex(text)))
                elif text:
                    pieces.append(Piece(text))
        if self.tree:
            pieces += [Piece("/"), Piece("*", ".+")]
        return tuple(pieces)


CASE_PROBE = ".agegate-case-probe-"
_lexists = os.path.lexists  # the lookup the probe makes (a test puts a stand-in here)


def case_problem(root: Path) -> str | None:
    """Why `root` cannot hold exact paths, or None: on a case-insensitive file system the
    directory of `A` is the directory of `a`. Probed by creating a name and looking it up in
    another case; the name is removed at once."""
    probe = root / f"{CASE_PROBE}{secrets.token_hex(4)}"
    try:
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except OSError as exc:
        return f"cannot be probed for case sensitivity ({exc.strerror}); it must be writable"
    try:
        folded = _lexists(probe.with_name(probe.name.upper()))
    finally:
        os.unlink(probe)
    if folded:
        return (
            "is on a case-insensitive file system, where 'A' and 'a' name one account's "
            "directory; put the platform's files on a case-sensitive one"
        )
    return None


def _glob_regex(text: str) -> str:
    wild = {"*": "[^/]*", "?": "[^/]"}
    regex, index = [], 0
    while index < len(text):
        char = text[index]
        if char == "[" and (end := text.find("]", index + 2)) > 0:
            regex.append("[^/]")
            index = end + 1
            continue
        regex.append(wild.get(char) or re.escape(char))
        index += 1
    return "".join(regex)


class FilesTarget:
    kind = "files"

    def __init__(
        self, name: str, root: Path, templates: list[PathTemplate], ids: AccountIds
    ) -> None:
        self.name = name
        self.root = Path(os.path.realpath(root))
        self.templates = templates
        self.ids = ids
        self.layouts: tuple[Layout, ...] = ()

    @classmethod
    def from_config(cls, config: dict[str, Any], location: str) -> FilesTarget:
        fields = Fields(config, location, (*COMMON_KEYS, "root", "paths", PATTERN_KEY))
        root = fields.string("root")
        if root and not Path(root).is_absolute():
            fields.problem(f"root: {root!r} must be an absolute path")
        elif root and not Path(root).is_dir():
            fields.problem(f"root: {root!r} is not a directory")
        elif root and (problem := case_problem(Path(root))):
            fields.problem(f"root: {root!r} {problem}")
        templates = []
        for index, text in enumerate(fields.strings("paths")):
            try:
                templates.append(PathTemplate.parse(text))
            except ValueError as exc:
                fields.problem(f"paths[{index}]: {exc}")
        # Paths are matched a whole part at a time, and the account's part literally: an id
        # holds no `/`, so no template needs a delimiter; a pattern may still narrow the ids.
        ids = fields.account_ids()
        fields.raise_problems()
        assert ids is not None  # a wrong pattern is a problem, raised above
        target = cls(config["name"], Path(root), templates, ids)
        # Every files target is one store, the file system: roots are part of the items, so
        # a root inside another target's root (or the same one reached by a link) is compared.
        target.layouts = tuple(
            Layout(f"{location}: paths[{i}] {t.text!r}", ("files",), t.pieces(target.root), ids)
            for i, t in enumerate(templates)
        )
        return target

    def check(self) -> None:
        if not self.root.is_dir():
            raise TargetError(f"{self.name}: root {str(self.root)!r} is not a directory")
        if not os.access(self.root, os.R_OK | os.W_OK | os.X_OK):
            raise TargetError(f"{self.name}: root {str(self.root)!r} is not writable")

    def count(self, account_id: str) -> int:
        self.ids.checked(account_id)
        return sum(1 for _ in self._items(account_id))

    def purge_batch(self, account_id: str, limit: int, context: PurgeContext) -> int:
        self.ids.checked(account_id)
        removed, checked = 0, set()
        for path in list(islice(self._items(account_id), limit)):
            if path.parent not in checked:  # one realpath per directory and batch, not per file
                self._inside(path)
                checked.add(path.parent)
            try:
                os.unlink(path)  # on a symbolic link: removes the link, never its target
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise TargetError(
                    f"{self.name}: cannot remove {self._rel(path)}: {exc.strerror}"
                ) from None
            removed += 1
        if removed < limit:  # nothing left: the account's emptied directories can go
            self._prune(account_id)
        return removed

    def close(self) -> None:
        """Nothing held open; here so every kind can be closed alike."""

    def _items(self, account_id: str) -> Iterator[Path]:
        seen: set[Path] = set()
        for template in self.templates:
            for path, is_dir in self._walk(template, account_id):
                if not is_dir and path not in seen:
                    seen.add(path)
                    yield path

    def _prune(self, account_id: str) -> None:
        dirs = {p for t in self.templates for p, is_dir in self._walk(t, account_id) if is_dir}
        for path in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
            self._inside(path)
            try:
                os.rmdir(path)
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
                    raise TargetError(
                        f"{self.name}: cannot remove {self._rel(path)}: {exc.strerror}"
                    ) from None

    def _walk(self, template: PathTemplate, account_id: str) -> Iterator[tuple[Path, bool]]:
        """(path, is_dir): the template's items, then the account's own directories."""
        parts = [p.replace(_ACCOUNT, account_id) for p in template.parts]
        level, own_dirs = [self.root], []
        for index, part in enumerate(parts):
            last, own = index == len(parts) - 1, index >= template.account_part
            following: list[Path] = []
            for directory in level:
                literal = index == template.account_part
                for path, mode in self._entries(directory, part, literal):
                    if stat.S_ISDIR(mode):
                        following.append(path)
                    elif last:
                        yield path, False
                    elif not own and stat.S_ISLNK(mode):
                        raise TargetError(
                            f"{self.name}: {self._rel(path)} is a symbolic link; refusing to follow it"
                        )
            level = following if not last or template.tree else []
            if own:
                own_dirs += level
        for directory in level:
            yield from self._tree(directory)
        yield from ((path, True) for path in own_dirs)

    def _tree(self, top: Path) -> Iterator[tuple[Path, bool]]:
        """Every entry under `top`, never descending through a symbolic link; dirs after their contents."""
        stack: list[tuple[Path, bool]] = [(top, False)]
        while stack:
            directory, visited = stack.pop()
            if visited:
                yield directory, True
                continue
            stack.append((directory, True))
            for path, mode in self._entries(directory, "*", literal=False):
                if stat.S_ISDIR(mode):
                    stack.append((path, False))
                else:
                    yield path, False

    def _entries(self, directory: Path, part: str, literal: bool) -> Iterator[tuple[Path, int]]:
        """Entries of `directory` matching `part`, with their lstat mode (links not followed)."""
        self._inside(directory / "x")
        if literal or not any(c in part for c in _GLOB_CHARS):
            try:
                mode = os.lstat(directory / part).st_mode
            except (FileNotFoundError, NotADirectoryError):
                return
            yield directory / part, mode
            return
        everything = part == "*"
        try:
            scan = os.scandir(directory)
        except (FileNotFoundError, NotADirectoryError):
            return
        # Lazily, in the directory's own order: a batch stops reading once it has its
        # `limit` files, so purging N files reads about N entries in all, not N²/limit.
        with scan:
            for entry in scan:
                if everything or fnmatch.fnmatchcase(entry.name, part):
                    yield Path(entry.path), _mode(entry)

    def _inside(self, path: Path) -> None:
        """Refuse a path whose directory is not a real directory under the root (no link on the way)."""
        parent = path.parent
        if os.path.realpath(parent) != str(parent) or not parent.is_relative_to(self.root):
            raise TargetError(f"{self.name}: {str(path)!r} leaves the root; refusing")

    def _rel(self, path: Path) -> str:
        return str(path.relative_to(self.root))


def _mode(entry: os.DirEntry[str]) -> int:
    """The entry's file type without following links; from the directory listing when the
    filesystem reports it (no stat call per file), from lstat otherwise."""
    if entry.is_symlink():
        return stat.S_IFLNK
    if entry.is_dir(follow_symlinks=False):
        return stat.S_IFDIR
    if entry.is_file(follow_symlinks=False):
        return stat.S_IFREG
    return entry.stat(follow_symlinks=False).st_mode
