"""The made-up platform the end-to-end script purges: generations and their children in a
PostgreSQL database, uploads and outputs in a media folder, and the targets file for both."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import text

from tests.e2e.stack import engine

# account id → generations; each has 2 outputs, a share link per output and a history row.
ACCOUNTS = {
    "e2e-child-1": 5,
    "e2e-child-2": 4,
    "e2e-child-3": 3,
    "e2e-adult-1": 6,
    "e2e-adult-2": 2,
}

SCHEMA = """
CREATE TABLE generations (id serial PRIMARY KEY, account_id text NOT NULL, prompt text NOT NULL);
CREATE INDEX ix_generations_account_id ON generations (account_id);
CREATE TABLE generation_outputs (id serial PRIMARY KEY,
    generation_id integer NOT NULL REFERENCES generations (id), path text NOT NULL);
CREATE TABLE share_links (id serial PRIMARY KEY,
    output_id integer NOT NULL REFERENCES generation_outputs (id), token text NOT NULL);
CREATE TABLE generation_history (id serial PRIMARY KEY, account_id text NOT NULL, event text NOT NULL);
"""

# Parents before children: the order a restore inserts them in.
OWNED_ROWS = {
    "generations": "SELECT * FROM generations WHERE account_id = :a",
    "generation_history": "SELECT * FROM generation_history WHERE account_id = :a",
    "generation_outputs": "SELECT * FROM generation_outputs WHERE generation_id IN "
    "(SELECT id FROM generations WHERE account_id = :a)",
    "share_links": "SELECT * FROM share_links WHERE output_id IN (SELECT o.id FROM "
    "generation_outputs o JOIN generations g ON g.id = o.generation_id WHERE g.account_id = :a)",
}

TARGETS = """targets:
  - name: platform-db
    kind: sql
    url: "${{PLATFORM_DATABASE_URL}}"
    tables:
      - {{table: generations, account_column: account_id}}
      - {{table: generation_history, account_column: account_id}}
      - {{table: generation_outputs, parent: {{table: generations, column: generation_id, references: id}}}}
      - {{table: share_links, parent: {{table: generation_outputs, column: output_id, references: id}}}}
  - name: media
    kind: files
    root: "{media}"
    paths: ["uploads/{{account_id}}/", "outputs/{{account_id}}/"]
"""

Snapshot = tuple[dict[str, list[tuple[Any, ...]]], dict[str, bytes]]


def expected_rows(account: str) -> int:
    return 6 * ACCOUNTS[account]  # generations, history, 2 outputs, 2 share links


def expected_files(account: str) -> int:
    return 3 * ACCOUNTS[account]  # an upload and 2 outputs per generation


class Platform:
    def __init__(self, database_url: str, media: Path) -> None:
        self.engine = engine(database_url)
        self.media = media

    def seed(self, targets_file: Path) -> None:
        with self.engine.begin() as conn:
            conn.exec_driver_sql(SCHEMA)
            for account, generations in ACCOUNTS.items():
                for g in range(generations):
                    gen = conn.execute(
                        text(
                            "INSERT INTO generations (account_id, prompt) VALUES (:a, :p) RETURNING id"
                        ),
                        {"a": account, "p": f"a paper boat on a pond, take {g}"},
                    ).scalar_one()
                    conn.execute(
                        text(
                            "INSERT INTO generation_history (account_id, event) VALUES (:a, 'generated')"
                        ),
                        {"a": account},
                    )
                    self._write(f"uploads/{account}/ref-{gen}.png", os.urandom(64))
                    for o in range(2):
                        path = f"outputs/{account}/clip-{gen}-{o}.mp4"
                        out = conn.execute(
                            text(
                                "INSERT INTO generation_outputs (generation_id, path) VALUES (:g, :p) RETURNING id"
                            ),
                            {"g": gen, "p": path},
                        ).scalar_one()
                        conn.execute(
                            text("INSERT INTO share_links (output_id, token) VALUES (:o, :t)"),
                            {"o": out, "t": f"share-{out:05d}"},
                        )
                        self._write(path, os.urandom(256))
        targets_file.write_text(TARGETS.format(media=self.media))

    def _write(self, relative: str, data: bytes) -> None:
        path = self.media / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def snapshot(self, account: str) -> Snapshot:
        """Every row and file the account owns, in full."""
        with self.engine.connect() as conn:
            rows = {
                table: [tuple(r) for r in conn.execute(text(f"{query} ORDER BY 1"), {"a": account})]
                for table, query in OWNED_ROWS.items()
            }
        files = {
            str(p.relative_to(self.media)): p.read_bytes()
            for p in sorted(self.media.rglob("*"))
            if p.is_file() and account in p.relative_to(self.media).parts
        }
        return rows, files

    def counts(self, account: str) -> tuple[int, int]:
        """(rows, files) the account owns now; the foreign keys rule out orphaned children."""
        rows, files = self.snapshot(account)
        return sum(len(r) for r in rows.values()), len(files)

    def restore(self, account: str, backup: Snapshot) -> None:
        """Put the account's rows and files back as they were in the backup."""
        rows, files = backup
        with self.engine.begin() as conn:
            for table in OWNED_ROWS:
                columns = list(conn.execute(text(f"SELECT * FROM {table} LIMIT 0")).keys())
                insert = text(
                    f"INSERT INTO {table} ({', '.join(columns)}) "
                    f"VALUES ({', '.join(':' + c for c in columns)})"
                )
                for row in rows[table]:
                    conn.execute(insert, dict(zip(columns, row, strict=True)))
        for relative, data in files.items():
            self._write(relative, data)

    def close(self) -> None:
        self.engine.dispose()
