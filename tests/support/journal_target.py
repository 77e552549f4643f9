"""A purge target kind for tests that run workers as processes: `journal`.

Items live in a SQLite file; every purge_batch call appends (account, pid, start, end) to a
journal table, so a test can prove that no two processes ever purged one account at once.
Loaded into a worker with AGEGATE_TARGET_PLUGINS=tests.support.journal_target.
"""

from __future__ import annotations

import os
import sqlite3
import time
from typing import Any

from agegate.remediation.targets.base import PurgeContext, checked_account_id
from agegate.remediation.targets.config import register_kind


class JournalTarget:
    kind = "journal"

    def __init__(self, name: str, path: str) -> None:
        self.name = name
        self.path = path

    @classmethod
    def from_config(cls, config: dict[str, Any], location: str) -> JournalTarget:
        return cls(config["name"], config["path"])

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30, isolation_level=None)

    def check(self) -> None:
        self._connect().close()

    def count(self, account_id: str) -> int:
        conn = self._connect()
        try:
            return int(
                conn.execute(
                    "SELECT count(*) FROM items WHERE account_id = ?",
                    (checked_account_id(account_id),),
                ).fetchone()[0]
            )
        finally:
            conn.close()

    def purge_batch(self, account_id: str, limit: int, context: PurgeContext) -> int:
        started = time.time()
        time.sleep(0.01)  # a window wide enough for a second worker to walk into
        conn = self._connect()
        try:
            gone = conn.execute(
                "DELETE FROM items WHERE id IN (SELECT id FROM items WHERE account_id = ? LIMIT ?)",
                (checked_account_id(account_id), limit),
            ).rowcount
            conn.execute(
                "INSERT INTO journal VALUES (?, ?, ?, ?)",
                (account_id, os.getpid(), started, time.time()),
            )
            return int(gone)
        finally:
            conn.close()

    def close(self) -> None:
        return None


def make_store(path: str, accounts: dict[str, int]) -> None:
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE items (id INTEGER PRIMARY KEY, account_id TEXT NOT NULL);"
        "CREATE TABLE journal (account_id TEXT, pid INTEGER, started REAL, ended REAL);"
    )
    for account, n in accounts.items():
        conn.executemany("INSERT INTO items (account_id) VALUES (?)", [(account,)] * n)
    conn.commit()
    conn.close()


register_kind("journal", JournalTarget.from_config)
