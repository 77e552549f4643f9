"""The demo platform: a SQLite database of generations and a media folder for made-up
accounts, with the targets file that purges them. The embedded default uses it, so a
newcomer can flag an account and watch its data go while the others stay."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

ACCOUNTS = {
    # account id → generations; ids are made up and look like nobody's real data
    "demo-child-1": 6,
    "demo-teen-2": 4,
    "demo-adult-3": 5,
    "demo-adult-4": 3,
}

SCHEMA = """
CREATE TABLE accounts (id TEXT PRIMARY KEY, display_name TEXT NOT NULL);
CREATE TABLE generations (id INTEGER PRIMARY KEY, account_id TEXT NOT NULL REFERENCES accounts(id),
    prompt TEXT NOT NULL, parameters TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE uploads (id INTEGER PRIMARY KEY, generation_id INTEGER NOT NULL REFERENCES generations(id),
    path TEXT NOT NULL);
CREATE TABLE generation_outputs (id INTEGER PRIMARY KEY,
    generation_id INTEGER NOT NULL REFERENCES generations(id), path TEXT NOT NULL);
CREATE TABLE share_links (id INTEGER PRIMARY KEY,
    output_id INTEGER NOT NULL REFERENCES generation_outputs(id), token TEXT NOT NULL);
CREATE TABLE generation_history (id INTEGER PRIMARY KEY, account_id TEXT NOT NULL, event TEXT NOT NULL);
"""

TARGETS = """# The demo platform's purge targets (made by `agegate demo seed`).
targets:
  - name: platform-db
    kind: sql
    url: "sqlite:///{database}"
    tables:
      - {{table: generations, account_column: account_id}}
      - {{table: generation_history, account_column: account_id}}
      - {{table: uploads, parent: {{table: generations, column: generation_id, references: id}}}}
      - {{table: generation_outputs, parent: {{table: generations, column: generation_id, references: id}}}}
      - {{table: share_links, parent: {{table: generation_outputs, column: output_id, references: id}}}}
  - name: media
    kind: files
    root: "{media}"
    paths: ["uploads/{{account_id}}/", "outputs/{{account_id}}/"]
"""


def targets_file(var_dir: Path) -> Path:
    return var_dir / "demo" / "targets.yaml"


def seed(var_dir: Path) -> Path:
    """(Re)create the demo platform under var_dir/demo; returns its targets file."""
    root = (var_dir / "demo").resolve()
    if root.exists():
        shutil.rmtree(root)
    media = root / "media"
    media.mkdir(parents=True)
    database = root / "platform.db"
    conn = sqlite3.connect(database)
    try:
        conn.executescript(SCHEMA)
        _fill(conn, media)
        conn.commit()
    finally:
        conn.close()
    path = targets_file(var_dir)
    path.write_text(TARGETS.format(database=database, media=media))
    return path


def _fill(conn: sqlite3.Connection, media: Path) -> None:
    generation = output = 0
    for account, count in ACCOUNTS.items():
        conn.execute(
            "INSERT INTO accounts VALUES (?, ?)", (account, account.replace("-", " ").title())
        )
        for n in range(count):
            generation += 1
            conn.execute(
                "INSERT INTO generations VALUES (?, ?, ?, ?, ?)",
                (
                    generation,
                    account,
                    f"a red kite over the sea, take {n}",
                    '{"seconds": 4}',
                    "2026-11-01T10:00:00Z",
                ),
            )
            upload = media / "uploads" / account / f"ref-{generation}.png"
            _write(upload, b"\x89PNG demo reference image")
            conn.execute(
                "INSERT INTO uploads (generation_id, path) VALUES (?, ?)", (generation, str(upload))
            )
            output += 1
            clip = media / "outputs" / account / f"clip-{generation}.mp4"
            _write(clip, b"demo video bytes")
            conn.execute(
                "INSERT INTO generation_outputs VALUES (?, ?, ?)", (output, generation, str(clip))
            )
            conn.execute(
                "INSERT INTO share_links (output_id, token) VALUES (?, ?)",
                (output, f"share-{output:04d}"),
            )
            conn.execute(
                "INSERT INTO generation_history (account_id, event) VALUES (?, ?)",
                (account, "generated"),
            )


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
