"""Harnesses for the purge-target contract: one per kind, each seeding and photographing data.

A harness seeds an account's items in its store, says how to configure a target over them,
and takes a byte-exact snapshot of one account's data so a test can prove another account
was left exactly as it was.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest
import redis
import yaml
from sqlalchemy import (
    Column,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    insert,
    make_url,
    select,
    text,
)

from agegate.db import make_engine
from agegate.remediation.targets.config import Targets, load_targets

REDIS_ENV = "AGEGATE_TEST_REDIS_URL"
# s3 runs in every mode against a moto server the tests start: it needs no configured store.
CONTRACT_KINDS = ["sql", "files", "s3", "s3-versioned"] + (
    ["redis"] if os.environ.get(REDIS_ENV) else []
)
S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing-secret-never-echoed",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class Harness(Protocol):
    kind: str
    environ: dict[str, str]
    per_account: int  # items seed() creates for one account

    def entry(self) -> dict[str, Any]: ...
    def seed(self, account_id: str) -> None: ...
    def snapshot(self, account_id: str) -> Any: ...
    def close(self) -> None: ...


class SQLHarness:
    """generations ← generation_outputs ← output_frames, foreign keys enforced."""

    kind = "sql"
    per_account = 3 + 3 * 2 + 3 * 2 * 2

    def __init__(self, url: str, schema: str | None) -> None:
        self.url, self.schema = url, schema
        self.engine = make_engine(url, 1)
        if schema:
            with self.engine.begin() as conn:
                conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        self.metadata = MetaData(schema=schema)
        prefix = f"{schema}." if schema else ""
        self.generations = Table(
            "generations", self.metadata,
            Column("id", Integer, primary_key=True),
            Column("account_id", String(128), nullable=False, index=True),
            Column("prompt", Text, nullable=False),
        )  # fmt: skip
        self.outputs = Table(
            "generation_outputs", self.metadata,
            Column("id", Integer, primary_key=True),
            Column("generation_id", ForeignKey(f"{prefix}generations.id"), nullable=False),
            Column("path", Text, nullable=False),
        )  # fmt: skip
        self.frames = Table(
            "output_frames", self.metadata,
            Column("id", Integer, primary_key=True),
            Column("output_id", ForeignKey(f"{prefix}generation_outputs.id"), nullable=False),
            Column("data", LargeBinary, nullable=False),
        )  # fmt: skip
        self.metadata.create_all(self.engine)
        self.environ = {"PLATFORM_DATABASE_URL": url}

    def entry(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "name": "platform-db",
            "kind": "sql",
            "url": "${PLATFORM_DATABASE_URL}",
            "tables": [
                {"table": "generations", "account_column": "account_id"},
                # Listed before its parent: the deletion order comes from the parent chain.
                {
                    "table": "output_frames",
                    "parent": {
                        "table": "generation_outputs",
                        "column": "output_id",
                        "references": "id",
                    },
                },
                {
                    "table": "generation_outputs",
                    "parent": {
                        "table": "generations",
                        "column": "generation_id",
                        "references": "id",
                    },
                },
            ],
        }
        if self.schema:
            entry["schema"] = self.schema
        return entry

    def seed(self, account_id: str) -> None:
        with self.engine.begin() as conn:
            for g in range(3):
                gen_id = conn.execute(
                    insert(self.generations)
                    .values(account_id=account_id, prompt=f"prompt {g} of {account_id}")
                    .returning(self.generations.c.id)
                ).scalar_one()
                for o in range(2):
                    out_id = conn.execute(
                        insert(self.outputs)
                        .values(generation_id=gen_id, path=f"out/{account_id}/{g}-{o}.mp4")
                        .returning(self.outputs.c.id)
                    ).scalar_one()
                    for _ in range(2):
                        conn.execute(
                            insert(self.frames).values(output_id=out_id, data=os.urandom(16))
                        )

    def snapshot(self, account_id: str) -> Any:
        g, o, f = self.generations, self.outputs, self.frames
        with self.engine.connect() as conn:
            gens = conn.execute(
                select(g).where(g.c.account_id == account_id).order_by(g.c.id)
            ).all()
            outs = conn.execute(
                select(o)
                .join(g, o.c.generation_id == g.c.id)
                .where(g.c.account_id == account_id)
                .order_by(o.c.id)
            ).all()
            frames = conn.execute(
                select(f)
                .join(o, f.c.output_id == o.c.id)
                .join(g, o.c.generation_id == g.c.id)
                .where(g.c.account_id == account_id)
                .order_by(f.c.id)
            ).all()
        return [tuple(r) for r in gens], [tuple(r) for r in outs], [tuple(r) for r in frames]

    def close(self) -> None:
        if self.schema:
            with self.engine.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{self.schema}" CASCADE'))
        self.engine.dispose()


class FilesHarness:
    kind = "files"
    per_account = 3 + 2 + 1  # uploads tree, *.mp4 outputs, the avatar

    def __init__(self, root: Path) -> None:
        self.root = root
        for shared in ("uploads", "outputs", "avatars"):
            (root / shared).mkdir(parents=True)
        self.environ = {"MEDIA_ROOT": str(root)}

    def entry(self) -> dict[str, Any]:
        return {
            "name": "media",
            "kind": "files",
            "root": "${MEDIA_ROOT}",
            "paths": [
                "uploads/{account_id}/",
                "outputs/{account_id}/*.mp4",
                "avatars/{account_id}.png",
            ],
        }

    def seed(self, account_id: str) -> None:
        for rel in (
            f"uploads/{account_id}/a.png",
            f"uploads/{account_id}/sub/b.png",
            f"uploads/{account_id}/sub/deeper/c.bin",
            f"outputs/{account_id}/1.mp4",
            f"outputs/{account_id}/2.mp4",
            f"outputs/{account_id}/notes.txt",  # not matched by *.mp4: must stay
            f"avatars/{account_id}.png",
        ):
            path = self.root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(os.urandom(32))

    def snapshot(self, account_id: str) -> Any:
        """Every entry of the account's (file list, bytes, link targets), nothing followed."""
        found: dict[str, Any] = {}
        for directory, dirs, files in os.walk(self.root):
            for name in dirs + files:
                path = Path(directory, name)
                rel = path.relative_to(self.root)
                if account_id not in rel.parts and name != f"{account_id}.png":
                    continue
                if path.is_symlink():
                    found[str(rel)] = ("link", os.readlink(path))
                elif path.is_dir():
                    found[str(rel)] = ("dir",)
                else:
                    found[str(rel)] = ("file", path.read_bytes())
        return found

    def close(self) -> None:
        pass


class RedisHarness:
    kind = "redis"
    per_account = 5 + 1 + 1 + 1

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.environ = {"PLATFORM_REDIS_URL": url}

    def entry(self) -> dict[str, Any]:
        return {
            "name": "history-cache",
            "kind": "redis",
            "url": "${PLATFORM_REDIS_URL}",
            "patterns": ["gen:history:{account_id}:*", "gen:avatar:{account_id}"],
            # The ':' after the id ends it only for ids without ':' (test_exactness.py).
            "account_id_pattern": "[A-Za-z0-9_-]+",
        }

    def seed(self, account_id: str) -> None:
        for i in range(5):
            self.client.set(f"gen:history:{account_id}:{i}", os.urandom(16))
        self.client.hset(f"gen:history:{account_id}:meta", mapping={"n": 5, "who": account_id})
        self.client.rpush(f"gen:history:{account_id}:queue", "x", "y")
        self.client.set(f"gen:avatar:{account_id}", os.urandom(8))

    def snapshot(self, account_id: str) -> Any:
        """DUMP of every key of the account: value and type, byte for byte."""
        keys = sorted(
            k for k in self.client.scan_iter(count=1000) if k.split(b":")[2] == account_id.encode()
        )
        return {key: self.client.dump(key) for key in keys}

    def close(self) -> None:
        self.client.close()


class S3Harness:
    """Three layouts: a tree per account, a second tree, and one exact key per account.

    Versioned: every key is written twice and one is then deleted, so the account holds two
    versions of each key plus a delete marker, and all of them must go.
    """

    kind = "s3"
    keys = ("media/{a}/a.png", "media/{a}/sub/b.png", "media/{a}/c.bin", "uploads/{a}/1.mp4",
            "uploads/{a}/2.mp4", "avatars/{a}")  # fmt: skip
    unmatched = ("media/{a}.json", "avatars/{a}.png")  # near misses: must stay

    def __init__(self, endpoint: str, versioned: bool) -> None:
        import boto3

        self.versioned = versioned
        self.per_account = len(self.keys) * 2 + 1 if versioned else len(self.keys)
        self.bucket = f"gen-media-{uuid.uuid4().hex[:12]}"
        self.client = boto3.session.Session().client("s3", endpoint_url=endpoint)
        self.client.create_bucket(Bucket=self.bucket)
        if versioned:
            self.client.put_bucket_versioning(
                Bucket=self.bucket, VersioningConfiguration={"Status": "Enabled"}
            )
        self.environ = {"MEDIA_S3_ENDPOINT": endpoint}

    def entry(self) -> dict[str, Any]:
        return {
            "name": "blobs",
            "kind": "s3",
            "bucket": self.bucket,
            "endpoint_url": "${MEDIA_S3_ENDPOINT}",
            "region": "us-east-1",
            "prefixes": ["media/{account_id}/", "uploads/{account_id}/", "avatars/{account_id}"],
        }

    def seed(self, account_id: str) -> None:
        for template in self.keys + self.unmatched:
            key = template.format(a=account_id)
            for _ in range(2 if self.versioned else 1):
                self.client.put_object(Bucket=self.bucket, Key=key, Body=os.urandom(24))
        if self.versioned:
            self.client.delete_object(Bucket=self.bucket, Key=self.keys[0].format(a=account_id))

    def snapshot(self, account_id: str) -> Any:
        """Every version and delete marker of the account's keys, with its bytes."""
        found: dict[tuple[str, str, bool], bytes | None] = {}
        mine = {t.format(a=account_id) for t in self.keys + self.unmatched}
        for page in self.client.get_paginator("list_object_versions").paginate(Bucket=self.bucket):
            for version in page.get("Versions", []):
                if version["Key"] in mine:
                    body = self.client.get_object(
                        Bucket=self.bucket, Key=version["Key"], VersionId=version["VersionId"]
                    )["Body"]
                    with body:
                        found[(version["Key"], version["VersionId"], False)] = body.read()
            for marker in page.get("DeleteMarkers", []):
                if marker["Key"] in mine:
                    found[(marker["Key"], marker["VersionId"], True)] = None
        return found

    def versions_under(self, prefix: str) -> list[str]:
        response = self.client.list_object_versions(Bucket=self.bucket, Prefix=prefix)
        return [v["Key"] for v in response.get("Versions", []) + response.get("DeleteMarkers", [])]

    def close(self) -> None:
        self.client.close()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3-compatible server (moto) on an ephemeral port, with made-up credentials."""
    from moto.server import ThreadedMotoServer

    with pytest.MonkeyPatch.context() as patch:
        for name, value in S3_CREDENTIALS.items():
            patch.setenv(name, value)
        for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
            patch.delenv(name, raising=False)
        # No shared config or credentials file of the machine running the tests.
        patch.setenv("AWS_CONFIG_FILE", os.devnull)
        patch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            yield f"http://{host}:{port}"
        finally:
            server.stop()


@pytest.fixture
def harness(
    harness_kind: str, backend: Any, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Harness]:
    made: Harness
    if harness_kind == "sql":
        if backend.is_postgres:
            made = SQLHarness(backend.database_url, f"platform_{uuid.uuid4().hex[:12]}")
        else:
            made = SQLHarness(f"sqlite:///{tmp_path / 'platform.db'}", None)
    elif harness_kind == "files":
        made = FilesHarness(tmp_path / "media")
    elif harness_kind in ("s3", "s3-versioned"):
        endpoint = request.getfixturevalue("s3_endpoint")
        made = S3Harness(endpoint, versioned=harness_kind == "s3-versioned")
    else:
        url = request.getfixturevalue("redis_url")
        assert url is not None, f"{REDIS_ENV} is set but the backend has no Redis"
        made = RedisHarness(url)
    yield made
    made.close()


@pytest.fixture
def load(tmp_path: Path) -> Iterator[Callable[..., Targets]]:
    """load(entries, environ, hooks=None) → Targets from a targets.yaml; closed afterwards."""
    loaded: list[Targets] = []

    def make(entries: list[Any], environ: dict[str, str], hooks: Any = None) -> Targets:
        path = tmp_path / "targets.yaml"
        document: dict[str, Any] = {"targets": entries}
        if hooks is not None:
            document["hooks"] = hooks
        path.write_text(yaml.safe_dump(document), encoding="utf-8")
        targets = load_targets(path, environ)
        loaded.append(targets)
        return targets

    yield make
    for targets in loaded:
        targets.close()


@pytest.fixture
def sqlite_platform(tmp_path: Path) -> Iterator[str]:
    """A small SQLite platform database for configuration tests: generations + outputs."""
    url = f"sqlite:///{tmp_path / 'config-platform.db'}"
    engine = make_engine(url, 1)
    metadata = MetaData()
    Table(
        "generations",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("account_id", String(128)),
    )
    Table(
        "generation_outputs", metadata,
        Column("id", Integer, primary_key=True),
        Column("generation_id", ForeignKey("generations.id")),
    )  # fmt: skip
    metadata.create_all(engine)
    engine.dispose()
    yield make_url(url).render_as_string(hide_password=False)
