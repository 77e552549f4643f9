"""Every purge target kind passes one contract; then the targets file and the CLI."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from agegate.remediation.targets import config as target_config
from agegate.remediation.targets import s3 as s3_kind
from agegate.remediation.targets.base import (
    PurgeContext,
    PurgeTarget,
    TargetConfigError,
    TargetError,
    checked_account_id,
)
from agegate.remediation.targets.commands import targets as targets_cli
from agegate.remediation.targets.config import KINDS, Targets, register_kind
from agegate.remediation.targets.redis import escape_glob
from tests.contract.conftest import CONTRACT_KINDS, S3_CREDENTIALS, Harness, S3Harness

CTX = PurgeContext(case_id="case-test-1")
NOT_ACCOUNT_IDS = ["../x", "a/b", "*", "acct\n", "acct-*", "..", "acct-1*", "", "acct-1?", "[a]"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Parameters are decided at collection: a kind whose server is not configured is absent,
    # never skipped.
    if "harness_kind" in metafunc.fixturenames:
        metafunc.parametrize("harness_kind", CONTRACT_KINDS)


@pytest.fixture
def target(harness: Harness, load: Callable[..., Targets]) -> PurgeTarget:
    (only,) = load([harness.entry()], harness.environ).targets
    return only


def _purge_all(target: PurgeTarget, account_id: str, limit: int) -> list[int]:
    batches = []
    while True:
        removed = target.purge_batch(account_id, limit, CTX)
        assert 0 <= removed <= limit
        batches.append(removed)
        if removed == 0:
            return batches
        assert len(batches) < 1000, "purge does not converge"


# --- the contract ---------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [1, 4])
def test_purge_in_batches_removes_the_account_and_nothing_else(
    harness: Harness, target: PurgeTarget, limit: int
) -> None:
    for account in ("acct-1", "acct-2", "acct-10"):
        harness.seed(account)
    others = {a: harness.snapshot(a) for a in ("acct-2", "acct-10")}
    found = target.count("acct-1")
    assert found == harness.per_account

    batches = _purge_all(target, "acct-1", limit)

    assert sum(batches) == found
    assert target.count("acct-1") == 0
    assert target.purge_batch("acct-1", limit, CTX) == 0  # idempotent: again, nothing, no error
    assert target.count("acct-1") == 0
    for account, before in others.items():  # byte for byte; acct-10 proves no prefix match
        assert harness.snapshot(account) == before
        assert target.count(account) == harness.per_account


def test_an_account_without_data_counts_zero_and_purges_nothing(
    harness: Harness, target: PurgeTarget
) -> None:
    harness.seed("acct-2")
    before = harness.snapshot("acct-2")
    assert target.count("acct-1") == 0
    assert target.purge_batch("acct-1", 10, CTX) == 0
    assert harness.snapshot("acct-2") == before


def test_check_reaches_the_store(target: PurgeTarget) -> None:
    target.check()


@pytest.mark.parametrize("bad", NOT_ACCOUNT_IDS)
def test_ids_that_could_widen_a_match_are_refused(
    harness: Harness, target: PurgeTarget, bad: str
) -> None:
    for account in ("acct-1", "acct-10"):
        harness.seed(account)
    before = {a: harness.snapshot(a) for a in ("acct-1", "acct-10")}
    with pytest.raises(ValueError, match="not an account id"):
        target.count(bad)
    with pytest.raises(ValueError, match="not an account id"):
        target.purge_batch(bad, 100, CTX)
    assert {a: harness.snapshot(a) for a in before} == before


@pytest.mark.parametrize("bad", ["../x", "a/b", "*", "acct\n", ".."])
def test_checked_account_id_refuses_traversal_and_patterns(bad: str) -> None:
    with pytest.raises(ValueError):
        checked_account_id(bad)
    assert checked_account_id("acct-1") == "acct-1"


# --- kind-specific guarantees ---------------------------------------------------------------


@pytest.fixture
def media(tmp_path: Path, load: Callable[..., Targets]) -> tuple[Path, PurgeTarget]:
    from tests.contract.conftest import FilesHarness

    harness = FilesHarness(tmp_path / "media")
    for account in ("acct-1", "acct-2"):
        harness.seed(account)
    (only,) = load([harness.entry()], harness.environ).targets
    return harness.root, only


def test_files_symlinks_are_removed_as_links_never_followed(
    media: tuple[Path, PurgeTarget], tmp_path: Path
) -> None:
    root, target = media
    outside = tmp_path / "outside"
    (outside / "deep").mkdir(parents=True)
    (outside / "secret.bin").write_bytes(b"outside the root")
    (outside / "deep" / "x.bin").write_bytes(b"deeper outside")
    own = root / "uploads" / "acct-1"
    (own / "to-acct-2-file.png").symlink_to(root / "uploads" / "acct-2" / "a.png")
    (own / "to-acct-2-dir").symlink_to(root / "uploads" / "acct-2", target_is_directory=True)
    (own / "to-outside").symlink_to(outside, target_is_directory=True)
    (root / "outputs" / "acct-1" / "x.mp4").symlink_to(outside / "secret.bin")
    acct2 = {p: p.read_bytes() for p in (root / "uploads" / "acct-2").rglob("*") if p.is_file()}

    # The links are items (4), what they point at is not counted.
    assert target.count("acct-1") == 6 + 4
    assert sum(_purge_all(target, "acct-1", 3)) == 10

    assert {
        p: p.read_bytes() for p in (root / "uploads" / "acct-2").rglob("*") if p.is_file()
    } == acct2
    assert (outside / "secret.bin").read_bytes() == b"outside the root"
    assert (outside / "deep" / "x.bin").read_bytes() == b"deeper outside"


def test_files_account_directory_replaced_by_a_link_is_unlinked_not_followed(
    media: tuple[Path, PurgeTarget],
) -> None:
    root, target = media
    victim = root / "outputs" / "acct-2"
    before = sorted(p.name for p in victim.iterdir())
    own = root / "uploads" / "acct-3"
    own.symlink_to(root / "outputs" / "acct-2", target_is_directory=True)
    assert target.count("acct-3") == 1  # the link itself
    assert target.purge_batch("acct-3", 10, CTX) == 1
    assert not own.exists() and not own.is_symlink()
    assert sorted(p.name for p in victim.iterdir()) == before


def test_files_a_linked_shared_directory_is_refused(
    media: tuple[Path, PurgeTarget], tmp_path: Path
) -> None:
    root, target = media
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "acct-1").mkdir(parents=True)
    (elsewhere / "acct-1" / "a.png").write_bytes(b"x")
    (root / "uploads").rename(tmp_path / "old-uploads")
    (root / "uploads").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(TargetError, match="symbolic link"):
        target.count("acct-1")
    with pytest.raises(TargetError, match="symbolic link"):
        target.purge_batch("acct-1", 10, CTX)
    assert (elsewhere / "acct-1" / "a.png").read_bytes() == b"x"


def test_files_prune_the_accounts_emptied_directories_only(media: tuple[Path, PurgeTarget]) -> None:
    root, target = media
    _purge_all(target, "acct-1", 100)
    assert not (root / "uploads" / "acct-1").exists()  # emptied: gone, subdirectories too
    assert (root / "outputs" / "acct-1" / "notes.txt").exists()  # not matched by *.mp4
    assert all((root / shared).is_dir() for shared in ("uploads", "outputs", "avatars"))
    assert root.is_dir()


def test_redis_glob_characters_are_escaped() -> None:
    assert escape_glob("acct-1") == "acct-1"
    assert escape_glob("a*b?c[d]e\\f") == "a\\*b\\?c\\[d\\]e\\\\f"


def _s3_entry(**changes: Any) -> dict[str, Any]:
    entry = {"name": "blobs", "kind": "s3", "bucket": "gen-media", "prefixes": ["{account_id}/"]}
    return {**entry, **changes}


@pytest.fixture
def versioned_s3(s3_endpoint: str) -> Iterator[S3Harness]:
    harness = S3Harness(s3_endpoint, versioned=True)
    yield harness
    harness.close()


def test_s3_versioned_purge_leaves_no_version_and_no_marker(
    versioned_s3: S3Harness, load: Callable[..., Targets]
) -> None:
    for account in ("acct-1", "acct-2"):
        versioned_s3.seed(account)
    acct2 = versioned_s3.snapshot("acct-2")
    (target,) = load([versioned_s3.entry()], versioned_s3.environ).targets
    assert target.count("acct-1") == 6 * 2 + 1  # two versions of each key, one delete marker

    assert sum(_purge_all(target, "acct-1", 5)) == 13

    for prefix in ("media/acct-1/", "uploads/acct-1/"):
        assert versioned_s3.versions_under(prefix) == []
    # The exact key is gone, every version of it; its near miss stays.
    assert set(versioned_s3.versions_under("avatars/acct-1")) == {"avatars/acct-1.png"}
    assert versioned_s3.snapshot("acct-2") == acct2


def test_s3_deletes_at_most_a_thousand_keys_per_request(
    s3_endpoint: str, load: Callable[..., Targets], monkeypatch: pytest.MonkeyPatch
) -> None:
    harness = S3Harness(s3_endpoint, versioned=False)
    harness.seed("acct-1")
    (target,) = load([harness.entry()], harness.environ).targets
    assert s3_kind.DELETE_BATCH == 1000
    monkeypatch.setattr(s3_kind, "DELETE_BATCH", 2)
    sizes: list[int] = []
    delete_objects = target.client.delete_objects  # type: ignore[attr-defined]

    def spy(**kwargs: Any) -> Any:
        sizes.append(len(kwargs["Delete"]["Objects"]))
        assert kwargs["Delete"]["Quiet"] is True
        return delete_objects(**kwargs)

    monkeypatch.setattr(target.client, "delete_objects", spy)  # type: ignore[attr-defined]
    assert target.purge_batch("acct-1", 5, CTX) == 5
    assert sizes == [2, 2, 1]
    assert target.count("acct-1") == 1
    harness.close()


def test_s3_a_refused_delete_is_a_target_error(
    s3_endpoint: str, load: Callable[..., Targets]
) -> None:
    import boto3

    client = boto3.session.Session().client("s3", endpoint_url=s3_endpoint)
    client.create_bucket(Bucket="gen-media-locked", ObjectLockEnabledForBucket=True)
    client.put_object(
        Bucket="gen-media-locked", Key="acct-1/held.mp4", Body=b"x", ObjectLockLegalHoldStatus="ON"
    )
    client.put_object(Bucket="gen-media-locked", Key="acct-1/free.mp4", Body=b"y")
    entry = _s3_entry(bucket="gen-media-locked", endpoint_url=s3_endpoint)
    (target,) = load([entry], {}).targets

    with pytest.raises(
        TargetError, match=r"refused 1 of 2 object versions \(AccessDenied\)"
    ) as caught:
        target.purge_batch("acct-1", 10, CTX)

    assert "held.mp4" not in str(caught.value)
    assert target.count("acct-1") == 1  # the held version stays and is found again
    client.put_object_legal_hold(
        Bucket="gen-media-locked", Key="acct-1/held.mp4", LegalHold={"Status": "OFF"}
    )
    assert target.purge_batch("acct-1", 10, CTX) == 1
    client.close()


def test_s3_errors_name_the_problem_never_the_credentials(
    s3_endpoint: str, load: Callable[..., Targets]
) -> None:
    entry = _s3_entry(bucket="no-such-bucket-here", endpoint_url=s3_endpoint)
    (target,) = load([entry], {}).targets
    with pytest.raises(TargetError, match="blobs: 404") as caught:
        target.check()
    with pytest.raises(TargetError, match="NoSuchBucket"):
        target.count("acct-1")
    for secret in (S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"], S3_CREDENTIALS["AWS_SESSION_TOKEN"]):
        assert secret not in str(caught.value)


@pytest.mark.parametrize(
    "template",
    ["{account_id}-x/", "u/{account_id}*", "avatars/{account_id}.png", "u/{account_id}_/"],
)
def test_s3_prefixes_that_could_reach_another_account_are_refused(
    load: Callable[..., Targets], template: str
) -> None:
    message = _problems(load, [_s3_entry(prefixes=["ok/{account_id}/", template])], {})
    assert (
        f"targets[0] (blobs): prefixes[1]: {template!r}: {{account_id}} must be followed by '/' "
        "or end the prefix"
    ) in message


def test_s3_prefixes_that_overlap_are_refused(load: Callable[..., Targets]) -> None:
    entry = _s3_entry(prefixes=["{account_id}/", "uploads/{account_id}/"])
    message = _problems(load, [entry], {})
    assert (
        "targets[0] (blobs): prefixes[0] '{account_id}/' overlaps targets[0] (blobs): "
        "prefixes[1] 'uploads/{account_id}/': both match 'uploads/0/', so a purge of 'uploads' "
        "would reach an item of '0'"
    ) in message
    assert "must contain {account_id}" in _problems(load, [_s3_entry(prefixes=["all/"])], {})


def test_s3_credentials_in_the_file_are_refused(load: Callable[..., Targets]) -> None:
    entry = _s3_entry(
        aws_access_key_id="AKIAEXAMPLEEXAMPLE",
        aws_secret_access_key="hunter2-in-the-file",
        endpoint_url="https://key:hunter3@s3.example",
    )
    message = _problems(load, [entry], {})
    for key in ("aws_access_key_id", "aws_secret_access_key"):
        assert f"targets[0] (blobs): {key}: credentials never live in the targets file" in message
    assert "endpoint_url: carries credentials" in message
    assert "hunter2" not in message and "hunter3" not in message and "AKIA" not in message


def test_s3_without_boto3_says_how_to_install_it(
    load: Callable[..., Targets], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)  # import boto3 now raises ImportError
    message = _problems(load, [_s3_entry()], {})
    assert "targets[0] (blobs): kind s3 needs boto3: pip install 'agegate[s3]'" in message


# --- the targets file -----------------------------------------------------------------------


def _sql_entry(**changes: Any) -> dict[str, Any]:
    return {
        "name": "platform-db",
        "kind": "sql",
        "url": "${PLATFORM_DATABASE_URL}",
        "tables": [{"table": "generations", "account_column": "account_id"}],
        **changes,
    }


def _problems(
    load: Callable[..., Targets], entries: list[Any], environ: dict[str, str], **kw: Any
) -> str:
    with pytest.raises(TargetConfigError) as caught:
        load(entries, environ, **kw)
    return str(caught.value)


def test_variables_are_expanded_from_the_environment(
    load: Callable[..., Targets], sqlite_platform: str
) -> None:
    loaded = load([_sql_entry()], {"PLATFORM_DATABASE_URL": sqlite_platform})
    (target,) = loaded.targets
    assert (target.name, target.kind) == ("platform-db", "sql")
    assert target.count("acct-1") == 0


def test_a_missing_variable_is_named_and_no_value_is_shown(load: Callable[..., Targets]) -> None:
    message = _problems(load, [_sql_entry(url="postgresql://u:${DB_PASSWORD}@db.invalid/p")], {})
    assert (
        "targets.yaml: targets[0] (platform-db): url: environment variable DB_PASSWORD is not set"
        in message
    )


def test_a_password_written_in_the_file_is_refused(load: Callable[..., Targets]) -> None:
    message = _problems(load, [_sql_entry(url="postgresql://u:hunter2@db.invalid/p")], {})
    assert "targets[0] (platform-db): url: carries a password" in message
    assert "hunter2" not in message


def test_unknown_kind_lists_the_known_kinds(load: Callable[..., Targets]) -> None:
    message = _problems(load, [{"name": "x", "kind": "ftp"}], {})
    assert "targets[0] (x): unknown kind 'ftp' (known kinds: " in message
    known = message.split("known kinds: ", 1)[1].split(")", 1)[0].split(", ")
    assert {"files", "http", "redis", "s3", "sql"} <= set(known)  # plugins may add more


def test_a_reserved_kind_reads_as_not_available_yet(
    load: Callable[..., Targets], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(target_config, "NOT_YET_AVAILABLE", ("gcs",))
    message = _problems(load, [{"name": "later", "kind": "gcs"}], {})
    assert "targets[0] (later): kind 'gcs' is not available yet" in message


def test_names_must_be_valid_and_unique(load: Callable[..., Targets], tmp_path: Path) -> None:
    entry = {"kind": "files", "root": str(tmp_path), "paths": ["u/{account_id}/"]}
    message = _problems(
        load,
        [{**entry, "name": "media"}, {**entry, "name": "media"}, {**entry, "name": "Bad_Name"}],
        {},
    )
    assert "targets[1] (media): duplicate name 'media'" in message
    assert "targets[2] (Bad_Name): name must match" in message


def test_missing_tables_and_columns_are_refused_with_their_location(
    load: Callable[..., Targets], sqlite_platform: str
) -> None:
    entry = _sql_entry(
        tables=[
            {"table": "generations", "account_column": "acount_id"},
            {
                "table": "generation_outputs",
                "parent": {"table": "generations", "column": "gen_id", "references": "id"},
            },
            {
                "table": "generation_thumbnails",
                "parent": {"table": "generations", "column": "x", "references": "id"},
            },
        ]
    )
    message = _problems(load, [entry], {"PLATFORM_DATABASE_URL": sqlite_platform})
    for expected in (
        "targets.yaml: targets[0] (platform-db): table 'generations' has no column 'acount_id'",
        "targets.yaml: targets[0] (platform-db): table 'generation_outputs' has no column 'gen_id'",
        "targets.yaml: targets[0] (platform-db): table 'generation_thumbnails' does not exist",
    ):
        assert expected in message


def test_the_parent_chain_must_be_declared_and_acyclic(
    load: Callable[..., Targets], sqlite_platform: str
) -> None:
    def child(table: str, parent: str) -> dict[str, Any]:
        return {"table": table, "parent": {"table": parent, "column": "id", "references": "id"}}

    environ = {"PLATFORM_DATABASE_URL": sqlite_platform}
    message = _problems(
        load, [_sql_entry(tables=[child("generation_outputs", "nowhere")])], environ
    )
    assert "'generation_outputs' has parent 'nowhere', which is not listed" in message
    message = _problems(load, [_sql_entry(tables=[child("a", "b"), child("b", "a")])], environ)
    assert "tables: parents of 'a' form a cycle" in message
    both = {"table": "generations", "account_column": "account_id", "parent": {}}
    message = _problems(load, [_sql_entry(tables=[both])], environ)
    assert "tables[0]: give exactly one of account_column and parent" in message


def test_every_problem_in_the_file_is_listed(load: Callable[..., Targets], tmp_path: Path) -> None:
    entries = [
        {
            "name": "media",
            "kind": "files",
            "root": "relative/dir",
            "paths": ["../{account_id}/", "x/*/"],
        },
        {
            "name": "cache",
            "kind": "redis",
            "url": "redis://r.invalid/0",
            "patterns": ["gen:{account_id}*"],
            "patern": 1,
        },
    ]
    message = _problems(load, entries, {})
    for expected in (
        "targets[0] (media): root: 'relative/dir' must be an absolute path",
        "targets[0] (media): paths[0]: '../{account_id}/': must be relative to root",
        "targets[0] (media): paths[1]: 'x/*/': must contain {account_id}",
        "targets[1] (cache): unknown key(s) patern",
        "targets[1] (cache): patterns[0]: 'gen:{account_id}*': a wildcard right after {account_id}",
    ):
        assert expected in message


def test_hooks_are_checked_and_kept(load: Callable[..., Targets], tmp_path: Path) -> None:
    entry = {"name": "media", "kind": "files", "root": str(tmp_path), "paths": ["u/{account_id}/"]}
    suspend = {
        "name": "suspend",
        "kind": "http",
        "method": "post",
        "url": "https://accounts.example/{account_id}/suspend",
    }
    loaded = load([entry], {}, hooks={"contain": [suspend]})
    assert loaded.hooks["contain"] == ({**suspend, "method": "POST"},)
    assert loaded.hooks["release"] == ()
    message = _problems(
        load, [entry], {}, hooks={"contain": [{"name": "suspend", "kind": "http"}], "pause": []}
    )
    assert "hooks: unknown key(s) pause" in message
    assert "hooks: contain[0]: url: required" in message
    assert "hooks: contain[0]: method: required" in message


def test_register_kind_adds_a_kind(load: Callable[..., Targets], fake_kind: None) -> None:
    (target,) = load([{"name": "fake-one", "kind": "fake"}], {}).targets
    assert target.kind == "fake"
    with pytest.raises(ValueError, match="already registered"):
        register_kind("fake", lambda config, location: FakeTarget(config))


# --- the CLI --------------------------------------------------------------------------------


class FakeTarget:
    kind = "fake"

    def __init__(self, config: dict[str, Any]) -> None:
        self.name = config["name"]
        self.broken = bool(config.get("broken"))

    def check(self) -> None:
        if self.broken:
            raise TargetError("refused by fake.invalid")

    def count(self, account_id: str) -> int:
        return 7

    def purge_batch(self, account_id: str, limit: int, context: PurgeContext) -> int:
        raise AssertionError("preview must not purge")


@pytest.fixture
def fake_kind() -> Iterator[None]:
    register_kind("fake", lambda config, location: FakeTarget(config))
    yield
    KINDS.pop("fake")


def _run(args: list[str], targets_file: Path | None) -> Any:
    env = {"AGEGATE_TARGETS_FILE": str(targets_file) if targets_file else ""}
    return CliRunner().invoke(targets_cli, args, env=env)


def test_cli_check_reports_every_target(tmp_path: Path, fake_kind: None) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(
        "targets:\n"
        f"  - {{name: media, kind: files, root: {tmp_path}, paths: ['u/{{account_id}}/']}}\n"
        "  - {name: provider, kind: fake, broken: true}\n"
    )
    result = _run(["check"], path)
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "media files ok",
        "provider fake FAILED: refused by fake.invalid",
    ]


def test_cli_check_without_a_file_or_with_a_bad_one_fails(tmp_path: Path) -> None:
    # No file named, and no service state where the embedded default's would be.
    result = CliRunner().invoke(
        targets_cli,
        ["check"],
        env={"AGEGATE_TARGETS_FILE": "", "AGEGATE_VAR_DIR": str(tmp_path / "nowhere")},
    )
    assert result.exit_code == 1 and "no agegate state here" in str(result.exception)
    assert not (tmp_path / "nowhere").exists()
    path = tmp_path / "t.yaml"
    path.write_text("targets:\n  - {name: blobs, kind: s3}\n")
    result = _run(["check"], path)
    assert result.exit_code == 1 and "(blobs): bucket: required" in result.output


def test_cli_preview_counts_and_deletes_nothing(tmp_path: Path, fake_kind: None) -> None:
    (tmp_path / "u" / "acct-1").mkdir(parents=True)
    (tmp_path / "u" / "acct-1" / "a.png").write_bytes(b"a")
    path = tmp_path / "t.yaml"
    path.write_text(
        "targets:\n"
        f"  - {{name: media, kind: files, root: {tmp_path}, paths: ['u/{{account_id}}/']}}\n"
        "  - {name: provider, kind: fake}\n"
    )
    result = _run(["preview", "acct-1"], path)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == ["media files 1", "provider fake 7"]
    assert (tmp_path / "u" / "acct-1" / "a.png").exists()
    result = _run(["preview", "../acct-1"], path)
    assert result.exit_code == 2 and "not an account id" in result.output


def test_example_file_is_valid_apart_from_its_stores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shipped example parses; only its stores (absent here) are reported."""
    monkeypatch.setenv("PROVIDER_SECRET", "example-signing-secret")
    example = Path(__file__).resolve().parents[2] / "config" / "targets.example.yaml"
    with pytest.raises(TargetConfigError) as caught:
        from agegate.remediation.targets.config import load_targets

        load_targets(
            example,
            {
                "PLATFORM_DATABASE_URL": f"sqlite:///{tmp_path}/none.db",
                "PLATFORM_REDIS_URL": "redis://r.invalid/0",
            },
        )
    lines = [line for line in str(caught.value).splitlines() if line.startswith("  - ")]
    assert all("platform-db" in line or "(media): root:" in line for line in lines), lines
    assert os.path.exists(example)
