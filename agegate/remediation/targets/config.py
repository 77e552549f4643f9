"""The targets file (docs/purge-targets.md): read it, check it whole, build one target per entry.

Start-up refuses a wrong file, so the message lists every problem at once, each with its
location (`targets.yaml: targets[0] (platform-db): ...`): an operator fixes the file in one
pass instead of one error per restart. Secrets never live in the file: `${VAR}` is replaced
from the environment, and a password written in a URL is refused.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from agegate.remediation.targets.base import PurgeTarget, TargetConfigError
from agegate.remediation.targets.ids import ANY_ACCOUNT, PATTERN_KEY, AccountIds, IdPattern
from agegate.remediation.targets.overlap import overlap_problems

Factory = Callable[[dict[str, Any], str], PurgeTarget]

NAME_RULE = "[a-z0-9][a-z0-9-]{0,62}"
NAME_PATTERN = re.compile(NAME_RULE + r"\Z")
COMMON_KEYS = ("name", "kind", "description")
# Kinds the contract names that have not landed yet: named as such, not as unknown.
NOT_YET_AVAILABLE: tuple[str, ...] = ()
HOOK_PHASES = ("contain", "release")
HOOK_KEYS = ("name", "kind", "url", "method", "description", "secret_env", "timeout")
HOOK_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_VARIABLE = re.compile(r"\$\{([^}]*)\}")
_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_SECRET_KEYS = ("password", "secret", "token", "api_key")


def _sql(config: dict[str, Any], location: str) -> PurgeTarget:
    from agegate.remediation.targets.sql import SQLTarget

    return SQLTarget.from_config(config, location)


def _files(config: dict[str, Any], location: str) -> PurgeTarget:
    from agegate.remediation.targets.files import FilesTarget

    return FilesTarget.from_config(config, location)


def _redis(config: dict[str, Any], location: str) -> PurgeTarget:
    from agegate.remediation.targets.redis import RedisTarget

    return RedisTarget.from_config(config, location)


def _s3(config: dict[str, Any], location: str) -> PurgeTarget:
    from agegate.remediation.targets.s3 import S3Target

    return S3Target.from_config(config, location)


def _http(config: dict[str, Any], location: str) -> PurgeTarget:
    from agegate.remediation.targets.http import HttpTarget

    return HttpTarget.from_config(config, location)


# Factories import their module lazily: the kind modules use the helpers below.
KINDS: dict[str, Factory] = {
    "sql": _sql,
    "files": _files,
    "s3": _s3,
    "redis": _redis,
    "http": _http,
}


def register_kind(kind: str, factory: Factory) -> None:
    """Add a kind (tests, and kinds that land later); a name is never silently rebound."""
    if kind in KINDS and KINDS[kind] is not factory:
        raise ValueError(f"purge target kind {kind!r} is already registered")
    KINDS[kind] = factory


@dataclass(frozen=True)
class Targets:
    targets: tuple[PurgeTarget, ...]
    hooks: dict[str, tuple[dict[str, Any], ...]] = field(default_factory=dict)

    def close(self) -> None:
        """Release every target's connections (engines, pools)."""
        close_all(self.targets)


def close_all(targets: Iterable[object]) -> None:
    for target in targets:
        close = getattr(target, "close", None)
        if callable(close):
            close()


class Fields:
    """One mapping of the file, read with every problem noted at its location."""

    def __init__(
        self,
        data: Mapping[str, Any],
        location: str,
        allowed: Iterable[str],
        problems: list[str] | None = None,
    ) -> None:
        self.data = data
        self.location = location
        self.problems: list[str] = [] if problems is None else problems
        allowed = list(allowed)
        unknown = sorted(str(key) for key in data if key not in allowed)
        if unknown:
            self.problem(f"unknown key(s) {', '.join(unknown)} (allowed: {', '.join(allowed)})")

    def problem(self, message: str) -> None:
        self.problems.append(f"{self.location}: {message}")

    def child(self, data: Any, where: str, allowed: Iterable[str]) -> Fields | None:
        """A nested mapping, sharing this reader's problem list."""
        if not isinstance(data, dict):
            self.problem(f"{where}: expected a mapping")
            return None
        return Fields(data, f"{self.location}: {where}", allowed, self.problems)

    def string(self, key: str) -> str:
        value = self.data.get(key)
        if not isinstance(value, str) or not value.strip():
            self.problem(f"{key}: required, a non-empty string")
            return ""
        return value

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        value = self.data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.problem(f"{key}: expected an integer from {low} to {high}")
            return default
        return value

    def items(self, key: str) -> list[Any]:
        value = self.data.get(key)
        if not isinstance(value, list) or not value:
            self.problem(f"{key}: required, a non-empty list")
            return []
        return value

    def strings(self, key: str) -> list[str]:
        values = self.items(key)
        if not all(isinstance(v, str) and v for v in values):
            self.problem(f"{key}: every entry must be a non-empty string")
            return []
        return values

    def account_ids(self) -> AccountIds | None:
        """The ids the target accepts (its optional `account_id_pattern`); None if it is wrong,
        so that the templates' checks do not add a second message about the same line."""
        text = self.data.get(PATTERN_KEY)
        if text is None:
            return ANY_ACCOUNT
        if not isinstance(text, str) or not text:
            self.problem(f"{PATTERN_KEY}: expected a non-empty string (a regular expression)")
            return None
        try:
            return AccountIds(IdPattern.parse(text))
        except ValueError as exc:
            self.problem(f"{PATTERN_KEY}: {exc}")
            return None

    def raise_problems(self) -> None:
        if self.problems:
            raise TargetConfigError("\n".join(self.problems))


def account_template_problem(template: str, required: bool = True) -> str | None:
    """Why `template` is not a safe account template, or None.

    Only `{account_id}` may be substituted, and a purge template must contain it: without it
    the template would match every account's data.
    """
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        return f"{template!r}: {exc}"
    names = {(name, spec, conv) for _, name, spec, conv in parsed if name is not None}
    if not names:
        if not required:
            return None
        return f"{template!r}: must contain {{account_id}}"
    if names != {("account_id", "", None)}:
        return f"{template!r}: only {{account_id}} may be substituted (no other fields, no format spec)"
    return None


def load_targets(path: Path, environ: Mapping[str, str]) -> Targets:
    """Read, expand and check the targets file; build every target or raise TargetConfigError."""
    label = path.name
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TargetConfigError(f"{label}: cannot read the targets file: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise TargetConfigError(f"{label}: not valid YAML: {_yaml_problem(exc)}") from None
    if not isinstance(data, dict):
        raise TargetConfigError(f"{label}: expected a mapping with a 'targets:' list")
    top = Fields(data, label, ("targets", "hooks"))
    built: list[PurgeTarget] = []
    try:
        names: dict[str, str] = {}
        for index, raw in enumerate(top.items("targets")):
            target = _build_target(raw, f"{label}: targets[{index}]", environ, top.problems, names)
            if target is not None:
                built.append(target)
        hooks = _hooks(data.get("hooks"), label, environ, top.problems)
        # The targets that were built have templates that are each right: can two meet?
        layouts = [layout for t in built for layout in getattr(t, "layouts", ())]
        top.problems.extend(overlap_problems(layouts))
        if top.problems:
            raise TargetConfigError(
                f"invalid targets file ({len(top.problems)} problem(s)):\n"
                + "\n".join(f"  - {p}" for p in top.problems)
            )
    except BaseException:
        close_all(built)
        raise
    return Targets(tuple(built), hooks)


def _build_target(
    raw: Any, where: str, environ: Mapping[str, str], problems: list[str], names: dict[str, str]
) -> PurgeTarget | None:
    if not isinstance(raw, dict):
        problems.append(f"{where}: expected a mapping")
        return None
    name, kind = raw.get("name"), raw.get("kind")
    if isinstance(name, str):
        where = f"{where} ({name})"
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        problems.append(f"{where}: name must match {NAME_RULE}, got {name!r}")
    elif name in names:
        problems.append(f"{where}: duplicate name {name!r} (first used by {names[name]})")
    else:
        names[name] = where
    factory = _factory(kind, where, problems)
    _refuse_literal_secrets(raw, where, problems)
    before = len(problems)
    config = _expand(raw, environ, where, "", problems)
    if factory is None or len(problems) > before:
        return None
    try:
        return factory(config, where)
    except TargetConfigError as exc:
        problems.extend(str(exc).splitlines())
        return None


def _factory(kind: Any, where: str, problems: list[str]) -> Factory | None:
    if isinstance(kind, str) and kind in KINDS:
        return KINDS[kind]
    if kind in NOT_YET_AVAILABLE:
        problems.append(f"{where}: kind {kind!r} is not available yet")
    elif kind is None:
        problems.append(f"{where}: kind: required (known kinds: {', '.join(sorted(KINDS))})")
    else:
        problems.append(f"{where}: unknown kind {kind!r} (known kinds: {', '.join(sorted(KINDS))})")
    return None


def _hooks(
    raw: Any, label: str, environ: Mapping[str, str], problems: list[str]
) -> dict[str, tuple[dict[str, Any], ...]]:
    """Hooks are http requests; their shape is checked here, the requests are built at start-up."""
    hooks: dict[str, tuple[dict[str, Any], ...]] = {phase: () for phase in HOOK_PHASES}
    if raw is None:
        return hooks
    top = Fields({}, label, (), problems).child(raw, "hooks", HOOK_PHASES)
    if top is None:
        return hooks
    for phase in HOOK_PHASES:
        entries = top.data.get(phase, [])
        if not isinstance(entries, list):
            top.problem(f"{phase}: expected a list")
            continue
        checked = [_hook(top, phase, i, entry, environ) for i, entry in enumerate(entries)]
        names = [hook["name"] for hook in checked if hook]
        for name in sorted({n for n in names if names.count(n) > 1}):
            top.problem(f"{phase}: duplicate hook name {name!r}")
        hooks[phase] = tuple(hook for hook in checked if hook)
    return hooks


def _hook(
    top: Fields, phase: str, index: int, entry: Any, environ: Mapping[str, str]
) -> dict[str, Any]:
    hook = top.child(entry, f"{phase}[{index}]", HOOK_KEYS)
    if hook is None:
        return {}
    name, kind = hook.string("name"), hook.string("kind")
    url, method = hook.string("url"), hook.string("method")
    if name and not NAME_PATTERN.match(name):
        hook.problem(f"name {name!r} must match {NAME_RULE}")
    if kind and kind != "http":
        hook.problem(f"kind {kind!r}: hooks are http requests (kind: http)")
    if method and method.upper() not in HOOK_METHODS:
        hook.problem(f"method {method!r}: expected one of {', '.join(HOOK_METHODS)}")
    if url and (problem := account_template_problem(url, required=False)):
        hook.problem(f"url: {problem}")
    _refuse_literal_secrets(entry, hook.location, top.problems)
    expanded = _expand(entry, environ, hook.location, "", top.problems)
    return {**expanded, "method": method.upper()}


def _expand(
    value: Any, environ: Mapping[str, str], where: str, key: str, problems: list[str]
) -> Any:
    """Replace `${VAR}` in every string; a missing variable is named, its value never shown."""
    if isinstance(value, dict):
        return {
            k: _expand(v, environ, where, _join(key, str(k)), problems) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_expand(v, environ, where, f"{key}[{i}]", problems) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        variable = match.group(1)
        if not _VARIABLE_NAME.match(variable):
            problems.append(f"{where}: {key}: ${{{variable}}} is not a variable name")
        elif variable not in environ:
            problems.append(f"{where}: {key}: environment variable {variable} is not set")
        else:
            return environ[variable]
        return match.group(0)

    return _VARIABLE.sub(substitute, value)


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _refuse_literal_secrets(raw: Mapping[str, Any], where: str, problems: list[str]) -> None:
    """Secrets come from the environment only: a password typed into the file is refused."""
    for key, value in raw.items():
        if not isinstance(value, str):
            continue
        if key in _SECRET_KEYS and "${" not in value:
            problems.append(f"{where}: {key}: write ${{VAR}} and set it in the environment")
        elif key == "url":
            try:
                password = urlsplit(value).password
            except ValueError:
                continue
            if password and "${" not in password:
                problems.append(
                    f"{where}: url: carries a password; put the URL in the environment (${{VAR}})"
                )


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """The parser's complaint on one line, with where in the file it is."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if mark is None:
        return str(problem)
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
