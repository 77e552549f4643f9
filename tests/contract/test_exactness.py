"""The hostile platform: configurations that could let one account's purge reach another's data.

Each configuration that cannot be exact is refused when the targets are loaded, with the
message a user sees; each that is accepted is run against a real store full of neighbours
whose ids look alike (`a`, `a:b`, `a.b`, `ab`, ...), and every item that is not the purged
account's is compared byte for byte, the whole store at once.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner
from sqlalchemy import text

from agegate.db import make_engine
from agegate.remediation.targets import files as files_kind
from agegate.remediation.targets.base import PurgeContext, PurgeTarget, TargetConfigError, refusal
from agegate.remediation.targets.commands import targets as targets_cli
from agegate.remediation.targets.config import Targets
from agegate.remediation.targets.ids import AccountIdRefused
from tests.contract.conftest import REDIS_ENV

CTX = PurgeContext(case_id="case-exactness")
# Ids a careless layout confuses with `a`: extensions by each separator ids may hold, a
# prefix match, a case variant, and names that look like the layout's own parts.
NEIGHBOURS = ["a:b", "a.b", "a-b", "a_b", "ab", "A", "b", "a:b:c", "a.png", "b:a"]
NO_COLON = "[A-Za-z0-9._-]+"


def _problems(load: Callable[..., Targets], entry: dict[str, Any]) -> list[str]:
    with pytest.raises(TargetConfigError) as caught:
        load([entry], {})
    return [line for line in str(caught.value).splitlines() if line.startswith("  - ")]


def _redis(patterns: list[str], **extra: Any) -> dict[str, Any]:
    return {"name": "history", "kind": "redis", "url": "redis://127.0.0.1:1/0", "patterns": patterns, **extra}  # fmt: skip


# --- refused when loaded --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "short", "longer"),
    [
        ("gen:history:{account_id}:*", "a", "a:b"),
        ("gen:{account_id}.*", "a", "a.b"),
        ("gen:{account_id}-v2:*", "a", "a-b"),
        ("*:{account_id}", "b", "a:b"),
    ],
)
def test_an_ambiguous_redis_pattern_is_refused_with_its_fix(
    load: Callable[..., Targets], pattern: str, short: str, longer: str
) -> None:
    (line,) = _problems(load, _redis([pattern]))
    assert line.startswith("  - targets.yaml: targets[0] (history): patterns[0]: ")
    assert f"{pattern!r} is ambiguous" in line
    assert f"a purge of {short!r} would also reach the items of {longer!r}" in line
    assert "declare account_id_pattern" in line


def test_a_pattern_whose_ids_can_hold_the_delimiter_is_refused_with_an_example(
    load: Callable[..., Targets],
) -> None:
    entry = _redis(["gen:history:{account_id}:*"], account_id_pattern="[a-z0-9:]+")
    (line,) = _problems(load, entry)
    assert "account_id_pattern '[a-z0-9:]+' accepts ids that may contain ':'" in line
    assert "(such as '0:')" in line
    assert "narrow the pattern so that its ids cannot contain ':'" in line


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("*:{account_id}:*", "wildcards both before and after {account_id}"),
        ("gen:{account_id}*", "a wildcard right after {account_id}"),
        ("gen*{account_id}:x", "a wildcard right before {account_id}"),
        ("gen:{account_id}{account_id}:*", "two {account_id} side by side"),
        ("*/{account_id}/{account_id}", "may appear only once"),
    ],
)
def test_redis_patterns_that_no_id_rule_can_fix_are_refused(
    load: Callable[..., Targets], pattern: str, message: str
) -> None:
    (line,) = _problems(load, _redis([pattern], account_id_pattern="[a-z0-9]+"))
    assert message in line


@pytest.mark.parametrize(
    "pattern",
    ["gen:avatar:{account_id}", "gen:{account_id}/*", "*/{account_id}", "gen:{account_id}:v2/*"],
)
def test_a_pattern_whose_id_is_delimited_needs_no_account_id_pattern(
    load: Callable[..., Targets], pattern: str
) -> None:
    (target,) = load([_redis([pattern])], {}).targets
    assert refusal(target, "a:b") is None


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("[a-z", "is not a regular expression"),
        ("^[a-z]+$", "without anchors, lookarounds or back-references"),
        ("(?![x])[a-z]+", "lookarounds are not supported"),
        ("([a-z])\\1", "without anchors, lookarounds or back-references"),
        ("/[a-z]+", "accepts no account id"),
        (".*", "narrows nothing"),
        ("[A-Za-z0-9][A-Za-z0-9._:-]{0,127}", "narrows nothing"),
    ],
)
@pytest.mark.parametrize("kind", ["files", "s3", "redis"])
def test_account_id_pattern_must_be_a_plain_regular_expression_that_narrows(
    load: Callable[..., Targets], tmp_path: Path, kind: str, pattern: str, message: str
) -> None:
    entry = {
        "files": {"name": "media", "kind": "files", "root": str(tmp_path), "paths": ["u/{account_id}/"]},
        "s3": {"name": "blobs", "kind": "s3", "bucket": "b", "prefixes": ["u/{account_id}/"]},
        "redis": _redis(["gen:history:{account_id}:*"]),
    }[kind]  # fmt: skip
    (line,) = _problems(load, {**entry, "account_id_pattern": pattern})
    assert ": account_id_pattern: " in line and message in line


@pytest.mark.parametrize("kind", ["sql", "http"])
def test_kinds_without_templates_in_a_store_do_not_take_account_id_pattern(
    load: Callable[..., Targets], sqlite_platform: str, kind: str
) -> None:
    entry = {
        "sql": {"name": "db", "kind": "sql", "url": sqlite_platform, "tables": [{"table": "generations", "account_column": "account_id"}]},
        "http": {"name": "provider", "kind": "http", "url": "https://p.example/{account_id}"},
    }[kind]  # fmt: skip
    (line,) = _problems(load, {**entry, "account_id_pattern": "[a-z]+"})
    assert "unknown key(s) account_id_pattern" in line


# --- templates that meet (docs/purge-targets.md, "When two templates overlap") ------------


def _files(name: str, root: Path, *paths: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "kind": "files", "root": str(root), "paths": list(paths), **extra}


def _s3(name: str, bucket: str, *prefixes: str) -> dict[str, Any]:
    return {"name": name, "kind": "s3", "bucket": bucket, "prefixes": list(prefixes)}


def _overlaps(load: Callable[..., Targets], entries: list[dict[str, Any]]) -> list[str]:
    with pytest.raises(TargetConfigError) as caught:
        load(entries, {})
    return [line for line in str(caught.value).splitlines() if " overlaps " in line]


def test_two_layouts_in_one_directory_are_refused(
    load: Callable[..., Targets], tmp_path: Path
) -> None:
    """The reproduced case: purging account `uploads` took every account's uploads."""
    (line,) = _overlaps(load, [_files("media", tmp_path, "{account_id}/", "uploads/{account_id}/")])
    assert line == (
        "  - targets.yaml: targets[0] (media): paths[0] '{account_id}/' overlaps targets[0] "
        f"(media): paths[1] 'uploads/{{account_id}}/': both match '{tmp_path}/uploads/0/0', so "
        "a purge of 'uploads' would reach an item of '0'; give each layout a store of its own, "
        "or an account_id_pattern that keeps their ids apart"
    )


def test_targets_over_one_directory_are_compared_also_through_a_link(
    load: Callable[..., Targets], tmp_path: Path
) -> None:
    (tmp_path / "media" / "uploads").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "media" / "uploads")
    for root in (tmp_path / "media" / "uploads", tmp_path / "link"):
        entries = [
            _files("media", tmp_path / "media", "{account_id}/"),
            _files("uploads", root, "{account_id}/"),
        ]
        (line,) = _overlaps(load, entries)
        assert "targets[0] (media): paths[0] '{account_id}/' overlaps targets[1] (uploads)" in line
        assert "a purge of 'uploads' would reach an item of '0'" in line


@pytest.mark.parametrize(
    ("first", "second", "whose"),
    [
        ("u/{account_id}.d/", "u/{account_id}/", "a purge of '0' would reach an item of '0.d'"),
        ("v/{account_id}/", "v/x-{account_id}/", "a purge of 'x-0' would reach an item of '0'"),
        ("{account_id}/a/", "a/{account_id}/", "one account's purge could reach another's item"),
    ],
)
def test_files_templates_that_meet_within_a_target_are_refused(
    load: Callable[..., Targets], tmp_path: Path, first: str, second: str, whose: str
) -> None:
    (line,) = _overlaps(load, [_files("media", tmp_path, first, second)])
    assert whose in line


def test_buckets_and_redis_databases_are_compared_across_targets(
    load: Callable[..., Targets],
) -> None:
    (line,) = _overlaps(
        load, [_s3("a", "media", "{account_id}/"), _s3("b", "media", "uploads/{account_id}/")]
    )
    assert "targets[0] (a): prefixes[0] '{account_id}/' overlaps targets[1] (b)" in line
    entries = [
        _redis(["gen:{account_id}/*"], url="redis://localhost:6379/3"),
        {**_redis(["gen:{account_id}:x/*"], url="redis://127.0.0.1/3"), "name": "other"},
    ]
    (line,) = _overlaps(load, entries)
    assert "both match 'gen:0:x/', so a purge of '0:x' would reach an item of '0'" in line


def test_layouts_that_are_aligned_or_apart_are_accepted(
    load: Callable[..., Targets], tmp_path: Path
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    aligned = _files(
        "media", tmp_path / "a", "outputs/{account_id}/", "outputs/{account_id}/*.mp4",
        "uploads/{account_id}.d/", "uploads/{account_id}.d/thumbs/", "avatars/{account_id}.png",
    )  # fmt: skip
    apart = [
        aligned,
        _files("other", tmp_path / "b", "{account_id}/"),  # another directory
        _files("numbered", tmp_path / "a", "{account_id}/", account_id_pattern="[0-9]+"),
        _s3("s1", "one", "{account_id}/"),
        _s3("s2", "two", "uploads/{account_id}/"),  # another bucket
        _redis(["gen:{account_id}/*", "gen:avatar:{account_id}"], url="redis://localhost:6379/3"),
        {**_redis(["gen:{account_id}:x/*"], url="redis://localhost:6379/4"), "name": "db4"},
        {**_redis(["gen:avatar:{account_id}"], url="redis://127.0.0.1:6379/3"), "name": "same"},
    ]
    assert len(load(apart, {}).targets) == 8


# --- exact against real stores full of neighbours ------------------------------------------


class Store:
    """One kind's store seeded with `a` and its neighbours; snapshots it whole."""

    entry: dict[str, Any]
    environ: dict[str, str]

    def seed(self, account_id: str) -> int: ...  # how many items it made for the account
    def snapshot(self) -> dict[Any, Any]: ...


class RedisStore(Store):
    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.environ = {"PLATFORM_REDIS_URL": url}
        self.entry = _redis(
            ["gen:history:{account_id}:*", "gen:avatar:{account_id}"],
            url="${PLATFORM_REDIS_URL}",
            account_id_pattern=NO_COLON,
        )

    def seed(self, account_id: str) -> int:
        for i in range(3):
            self.client.set(f"gen:history:{account_id}:{i}", os.urandom(8))
        self.client.hset(f"gen:history:{account_id}:meta", mapping={"who": account_id})
        self.client.set(f"gen:avatar:{account_id}", os.urandom(8))
        return 5

    def snapshot(self) -> dict[Any, Any]:
        return {key: self.client.dump(key) for key in self.client.scan_iter(count=1000)}


class FilesStore(Store):
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir()
        self.environ = {"MEDIA_ROOT": str(root)}
        self.entry = {
            "name": "media",
            "kind": "files",
            "root": "${MEDIA_ROOT}",
            "paths": ["uploads/{account_id}/", "outputs/{account_id}/*.mp4", "avatars/{account_id}.png"],
        }  # fmt: skip

    def seed(self, account_id: str) -> int:
        for rel in (
            f"uploads/{account_id}/x.png",
            f"uploads/{account_id}/sub/y.png",
            f"outputs/{account_id}/1.mp4",
            f"avatars/{account_id}.png",
        ):
            path = self.root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(os.urandom(16))
        return 4

    def snapshot(self) -> dict[Any, Any]:
        found: dict[Any, Any] = {}
        for directory, dirs, files in os.walk(self.root):
            for name in dirs:
                found[os.path.relpath(os.path.join(directory, name), self.root)] = "dir"
            for name in files:
                path = Path(directory, name)
                found[str(path.relative_to(self.root))] = path.read_bytes()
        return found


class S3Store(Store):
    def __init__(self, endpoint: str) -> None:
        import boto3

        self.client = boto3.session.Session().client("s3", endpoint_url=endpoint)
        self.bucket = f"exact-{os.urandom(6).hex()}"
        self.client.create_bucket(Bucket=self.bucket)
        self.environ = {"S3_ENDPOINT": endpoint}
        self.entry = {
            "name": "blobs",
            "kind": "s3",
            "bucket": self.bucket,
            "endpoint_url": "${S3_ENDPOINT}",
            "region": "us-east-1",
            "prefixes": ["media/{account_id}/", "avatars/{account_id}"],
        }

    def seed(self, account_id: str) -> int:
        for key in (
            f"media/{account_id}/x.png",
            f"media/{account_id}/y/z.bin",
            f"avatars/{account_id}",
        ):
            self.client.put_object(Bucket=self.bucket, Key=key, Body=os.urandom(16))
        return 3

    def snapshot(self) -> dict[Any, Any]:
        found = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            for item in page.get("Contents", []):
                body = self.client.get_object(Bucket=self.bucket, Key=item["Key"])["Body"]
                with body:
                    found[item["Key"]] = body.read()
        return found


KINDS = ["files", "s3"] + (["redis"] if os.environ.get(REDIS_ENV) else [])


@pytest.fixture(params=KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "files":
        yield FilesStore(tmp_path / "media")
    elif request.param == "s3":
        yield S3Store(request.getfixturevalue("s3_endpoint"))
    else:
        url = request.getfixturevalue("redis_url")
        assert url is not None, f"{REDIS_ENV} is set but the backend has no Redis"
        yield RedisStore(url)


def _purge(target: PurgeTarget, account_id: str) -> int:
    removed = 0
    while gone := target.purge_batch(account_id, 2, CTX):
        removed += gone
    return removed


def test_a_purge_takes_the_account_and_no_neighbour_byte(
    store: Store, load: Callable[..., Targets]
) -> None:
    (target,) = load([store.entry], store.environ).targets
    # Only the redis layout needs a pattern (without ':'), which declares that no id with ':'
    # has keys there: those ids are refused, and not seeded (their keys would be `a`'s).
    refused = [n for n in NEIGHBOURS if refusal(target, n)]
    assert refused == (
        [n for n in NEIGHBOURS if ":" in n] if store.entry["kind"] == "redis" else []
    )
    mine = store.seed("a")
    for neighbour in NEIGHBOURS:
        if neighbour not in refused:
            store.seed(neighbour)
    before = store.snapshot()

    assert target.count("a") == mine
    assert _purge(target, "a") == mine
    assert target.count("a") == 0

    after = store.snapshot()
    gone = set(before) - set(after)
    assert len(gone) == mine or store.entry["kind"] == "files"  # files also count their dirs
    assert {key: before[key] for key in after} == after  # everyone else's, byte for byte
    for neighbour in NEIGHBOURS:
        if neighbour in refused:
            with pytest.raises(AccountIdRefused):
                target.purge_batch(neighbour, 100, CTX)
        else:
            assert target.count(neighbour) > 0, neighbour
    assert store.snapshot() == after


def test_an_id_outside_the_pattern_is_refused_and_nothing_is_touched(
    tmp_path: Path, load: Callable[..., Targets]
) -> None:
    store = FilesStore(tmp_path / "media")
    (target,) = load([{**store.entry, "account_id_pattern": "[a-z]+"}], store.environ).targets
    for account in ["a", "a.b", "A"]:
        store.seed(account)
    before = store.snapshot()
    for account in ["a.b", "A"]:
        expected = f"account id {account!r} does not match account_id_pattern '[a-z]+'"
        assert refusal(target, account) == expected
        with pytest.raises(AccountIdRefused, match="does not match account_id_pattern"):
            target.count(account)
        with pytest.raises(AccountIdRefused, match="does not match account_id_pattern"):
            target.purge_batch(account, 100, CTX)
    assert store.snapshot() == before
    assert target.count("a") == 4


# --- what an operator sees ------------------------------------------------------------------


def _cli(args: list[str], targets_file: Path) -> Any:
    return CliRunner().invoke(targets_cli, args, env={"AGEGATE_TARGETS_FILE": str(targets_file)})


def test_cli_check_names_an_ambiguous_template_and_its_fix_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "targets.yaml"
    path.write_text(
        "targets:\n"
        "  - {name: history, kind: redis, url: 'redis://127.0.0.1:1/0',"
        " patterns: ['gen:history:{account_id}:*']}\n"
    )
    result = _cli(["check"], path)
    assert result.exit_code == 1
    (line,) = [line for line in result.output.splitlines() if "history" in line]
    assert "'gen:history:{account_id}:*' is ambiguous" in line
    assert "declare account_id_pattern" in line


def test_cli_preview_says_which_target_refuses_an_id_and_counts_the_rest(tmp_path: Path) -> None:
    (tmp_path / "u" / "a.b").mkdir(parents=True)
    (tmp_path / "u" / "a.b" / "x.png").write_bytes(b"x")
    path = tmp_path / "targets.yaml"
    path.write_text(
        "targets:\n"
        f"  - {{name: media, kind: files, root: '{tmp_path}', paths: ['u/{{account_id}}/']}}\n"
        f"  - {{name: strict, kind: files, root: '{tmp_path}', paths: ['u/{{account_id}}/'],"
        " account_id_pattern: '[a-z]+'}\n"
    )
    result = _cli(["preview", "a.b"], path)
    assert result.exit_code == 1
    media, strict = result.output.splitlines()
    assert media == "media files 1"
    assert strict.startswith(
        "strict files REFUSED: account id 'a.b' does not match account_id_pattern '[a-z]+'; "
    )
    assert "a purge would take nothing here and fail the case (fix: " in strict
    assert (tmp_path / "u" / "a.b" / "x.png").exists()


def test_two_layouts_kept_apart_by_a_pattern_purge_one_account_byte_for_byte(
    load: Callable[..., Targets], tmp_path: Path
) -> None:
    """`{account_id}/` beside `uploads/{account_id}/` is exact once ids cannot be `uploads`."""
    store = FilesStore(tmp_path / "media")
    entries = [
        _files("top", store.root, "{account_id}/", account_id_pattern="[0-9]+"),
        _files("uploads", store.root, "uploads/{account_id}/"),
    ]
    targets = load(entries, {}).targets
    for account in ("7", "70", "8"):
        for rel in (f"{account}/clip.mp4", f"uploads/{account}/x.png", f"uploads/{account}.png"):
            (store.root / rel).parent.mkdir(parents=True, exist_ok=True)
            (store.root / rel).write_bytes(os.urandom(16))
    before = store.snapshot()
    assert [_purge(target, "7") for target in targets] == [1, 1]
    after = store.snapshot()
    assert set(before) - set(after) == {"7", "7/clip.mp4", "uploads/7", "uploads/7/x.png"}
    assert {key: before[key] for key in after} == after


# --- equality that bends: collations, numbers, parents ------------------------------------


class Platform:
    """A platform database of the backend under test: a schema of its own on PostgreSQL."""

    def __init__(self, backend: Any, tmp_path: Path) -> None:
        self.postgres = backend.is_postgres
        if self.postgres:
            self.schema: str | None = f"exact_{os.urandom(5).hex()}"
            self.url = backend.database_url
        else:
            self.schema, self.url = None, f"sqlite:///{tmp_path / 'platform.db'}"
        self.engine = make_engine(self.url, 1)
        if self.schema:
            self.run(f'CREATE SCHEMA "{self.schema}"', f'SET search_path TO "{self.schema}"')

    def run(self, *statements: str) -> None:
        with self.engine.begin() as conn:
            if self.schema:
                conn.execute(text(f'SET LOCAL search_path TO "{self.schema}", public'))
            for statement in statements:
                conn.execute(text(statement))

    def rows(self, table: str) -> list[tuple[Any, ...]]:
        with self.engine.connect() as conn:
            if self.schema:
                conn.execute(text(f'SET search_path TO "{self.schema}", public'))
            return [tuple(r) for r in conn.execute(text(f"SELECT * FROM {table} ORDER BY id"))]

    def entry(self, *tables: dict[str, Any]) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "name": "db",
            "kind": "sql",
            "url": self.url,
            "tables": list(tables),
        }
        if self.schema:
            entry["schema"] = self.schema
        return entry

    def close(self) -> None:
        if self.schema:
            self.run(f'DROP SCHEMA "{self.schema}" CASCADE')
        self.engine.dispose()


@pytest.fixture
def platform(backend: Any, tmp_path: Path) -> Iterator[Platform]:
    made = Platform(backend, tmp_path)
    yield made
    made.close()


ROOT = {"table": "generations", "account_column": "account_id"}


def _case_insensitive_columns(platform: Platform) -> list[str]:
    if not platform.postgres:
        return ["TEXT COLLATE NOCASE", "VARCHAR(128) COLLATE NOCASE"]
    platform.run(
        "CREATE EXTENSION IF NOT EXISTS citext WITH SCHEMA public",
        "CREATE COLLATION IF NOT EXISTS ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false)",
    )  # fmt: skip
    return ["public.citext", "TEXT COLLATE ci"]


def test_a_case_insensitive_account_column_is_compared_byte_for_byte(
    platform: Platform, load: Callable[..., Targets]
) -> None:
    for number, declared in enumerate(_case_insensitive_columns(platform)):
        table = f"generations_{number}"
        platform.run(
            f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, account_id {declared} NOT NULL, prompt TEXT)",
            *(f"INSERT INTO {table} VALUES ({i}, '{a}', 'p{i}')" for i, a in enumerate(["Alice", "alice", "ALICE", "alice", "alicE"])),
        )  # fmt: skip
        (target,) = load([platform.entry({**ROOT, "table": table})], {}).targets
        before = platform.rows(table)
        assert target.count("alice") == 2, declared
        assert _purge(target, "alice") == 2
        assert platform.rows(table) == [r for r in before if r[1] != "alice"], declared
        assert target.count("Alice") == 1 and target.count("ALICE") == 1


def test_an_integer_account_column_takes_only_the_canonical_spelling(
    platform: Platform, load: Callable[..., Targets]
) -> None:
    platform.run(
        "CREATE TABLE generations (id INTEGER PRIMARY KEY, account_id BIGINT NOT NULL, prompt TEXT)",
        *(f"INSERT INTO generations VALUES ({i}, {a}, 'p{i}')" for i, a in enumerate([7, 70, 7, 8])),
    )  # fmt: skip
    (target,) = load([platform.entry(ROOT)], {}).targets
    before = platform.rows("generations")
    for look_alike in ("007", "7.0", "7e0", "07"):
        reason = refusal(target, look_alike)
        assert reason == (
            f"account id {look_alike!r} does not match the canonical form of its integer "
            "account column '0|[1-9][0-9]{0,18}'"
        )
        with pytest.raises(AccountIdRefused):
            target.purge_batch(look_alike, 100, CTX)
    assert platform.rows("generations") == before
    assert target.count("7") == 2 and _purge(target, "7") == 2
    assert platform.rows("generations") == [r for r in before if r[1] != 7]


@pytest.mark.parametrize("declared", ["REAL", "NUMERIC(10, 2)", "DOUBLE PRECISION"])
def test_a_numeric_account_column_is_refused(
    platform: Platform, load: Callable[..., Targets], declared: str
) -> None:
    platform.run(f"CREATE TABLE generations (id INTEGER PRIMARY KEY, account_id {declared})")
    (line,) = _problems(load, platform.entry(ROOT))
    assert (
        "targets[0] (db): table 'generations': account column 'account_id' compares "
        "numerically, so '7', '7.0' and '7e0' are one account; key accounts by a text, "
        "integer or uuid column"
    ) in line


def test_a_parent_column_that_is_not_unique_is_refused(
    platform: Platform, load: Callable[..., Targets]
) -> None:
    """A child row hanging from `batch` 5 would go with whichever account's parent has it."""
    platform.run(
        "CREATE TABLE generations (id INTEGER PRIMARY KEY, account_id TEXT NOT NULL, batch INTEGER, slot INTEGER)",
        "CREATE UNIQUE INDEX ux_slot ON generations (slot) WHERE slot IS NOT NULL",
        "CREATE TABLE outputs (id INTEGER PRIMARY KEY, batch INTEGER, slot INTEGER, generation_id INTEGER)",
    )  # fmt: skip
    for column in ("batch", "slot"):  # no constraint at all; a partial unique index
        child = {"table": "outputs", "parent": {"table": "generations", "column": column, "references": column}}  # fmt: skip
        (line,) = _problems(load, platform.entry(ROOT, child))
        assert (
            f"table 'outputs': parent column generations.{column} is not unique on its own"
        ) in line
        assert "reference a unique column such as the primary key" in line
    child = {"table": "outputs", "parent": {"table": "generations", "column": "generation_id", "references": "id"}}  # fmt: skip
    assert len(load([platform.entry(ROOT, child)], {}).targets) == 1


def test_a_uuid_account_column_takes_only_the_canonical_spelling(
    platform: Platform, load: Callable[..., Targets]
) -> None:
    """PostgreSQL reads `A0EE…`, `a0ee…` and the unhyphenated form as one uuid. SQLite has
    no uuid type: a column declared UUID has numeric affinity there, and is refused."""
    platform.run("CREATE TABLE generations (id INTEGER PRIMARY KEY, account_id UUID NOT NULL)")
    if not platform.postgres:
        (line,) = _problems(load, platform.entry(ROOT))
        assert "account column 'account_id' compares numerically" in line
        return
    mine, other = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
    platform.run(
        *(f"INSERT INTO generations VALUES ({i}, '{a}')" for i, a in enumerate([mine, other, mine]))
    )
    (target,) = load([platform.entry(ROOT)], {}).targets
    before = platform.rows("generations")
    for look_alike in (mine.upper(), mine.replace("-", "")):
        assert "canonical form of its uuid account column" in (refusal(target, look_alike) or "")
    assert platform.rows("generations") == before
    assert _purge(target, mine) == 2
    assert [str(r[1]) for r in platform.rows("generations")] == [other]


def test_a_root_on_a_case_insensitive_file_system_is_refused(
    load: Callable[..., Targets], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No case-insensitive file system can be mounted here: a stand-in lookup folds case the
    way one would, and the probe must notice and leave nothing behind."""
    entry = _files("media", tmp_path, "u/{account_id}/")
    assert len(load([entry], {}).targets) == 1  # this machine's file system keeps case

    def folding(path: Any) -> bool:
        wanted = os.path.basename(path).lower()
        return any(name.lower() == wanted for name in os.listdir(os.path.dirname(path)))

    monkeypatch.setattr(files_kind, "_lexists", folding)
    (line,) = _problems(load, entry)
    assert line == (
        f"  - targets.yaml: targets[0] (media): root: '{tmp_path}' is on a case-insensitive "
        "file system, where 'A' and 'a' name one account's directory; put the platform's "
        "files on a case-sensitive one"
    )
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(files_kind.CASE_PROBE)]


def test_an_overlap_is_listed_beside_the_file_s_other_problems(
    load: Callable[..., Targets], tmp_path: Path
) -> None:
    entries = [
        _files("media", tmp_path, "{account_id}/", "uploads/{account_id}/"),
        _redis(["gen:{account_id}:*"]),
    ]
    with pytest.raises(TargetConfigError) as caught:
        load(entries, {})
    lines = [line for line in str(caught.value).splitlines() if line.startswith("  - ")]
    assert len(lines) == 2
    assert "(history): patterns[0]: 'gen:{account_id}:*' is ambiguous" in lines[0]
    assert "(media): paths[0] '{account_id}/' overlaps targets[0] (media): paths[1]" in lines[1]
