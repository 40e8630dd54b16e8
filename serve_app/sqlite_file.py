"""One SQLite file shared by every ingress replica on a machine (the usage store and the callback
outbox live in the same file): a connection per thread, and check-and-update steps serialised by
SQLite's own write lock."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class SqliteFile:
    """Subclasses name their tables in `_SCHEMA`; `_transaction` runs one atomic step."""

    _SCHEMA = ""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        db = self._connect()
        # WAL + synchronous=NORMAL: durable across process crashes and restarts, without an fsync
        # per write (a power cut may lose the last moments, never corrupt the file).
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(self._SCHEMA)

    def __getstate__(self) -> dict:
        return {"path": self.path}  # connections stay in the process and thread that opened them

    def __setstate__(self, state: dict) -> None:
        self.path, self._local = state["path"], threading.local()

    def _connect(self) -> sqlite3.Connection:
        # One connection per thread (the ingress calls from a thread pool), opened once.
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA synchronous=NORMAL")
        return db

    def _transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        db = self._connect()
        try:
            db.execute("BEGIN IMMEDIATE")  # the write lock first: a check-and-update is never interleaved
            result = fn(db)
            db.execute("COMMIT")
            return result
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
