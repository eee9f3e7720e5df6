"""A content-addressed answer cache in SQLite, shared across runs.

Keys are sha256 of everything that decides an answer: backend, model,
prompt version, the backend's options (without secrets), the task and the
request itself. A rerun, a crash resumed, a changed ensemble or another run
folder asking the same question gets the stored reply instead of paying
again. A reply is stored right after its call returns and commits at once,
so a process killed halfway loses at most the calls still in flight.

Only replies are stored (the raw text with its token counts, cost and
latency); parsing happens again on read, so a fixed parser applies to old
replies too. Failed calls are not stored: the next run tries them again.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .base import MineRequest

_SCHEMA = """CREATE TABLE IF NOT EXISTS replies (
    key TEXT PRIMARY KEY, backend TEXT, model TEXT, prompt_version TEXT, task TEXT,
    request_key TEXT, raw TEXT, tokens_in INTEGER, tokens_out INTEGER, cost_usd REAL,
    latency_s REAL, created REAL)"""


@dataclass(frozen=True)
class Reply:
    """A model's raw reply to one request and what it cost."""

    raw: str
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0


def default_cache_path() -> Path:
    from ..paths import answer_cache

    return answer_cache()


def cache_key(backend: str, model: str, prompt_version: str, options: dict[str, Any],
              request: MineRequest) -> str:
    """sha256 of the question: who is asked, with which prompt and options, about what."""
    payload = {"backend": backend, "model": model, "prompt": prompt_version,
               "options": options, "request": asdict(request)}
    text = json.dumps(payload, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class MiningCache:
    """``get`` / ``put`` of :class:`Reply` by :func:`cache_key`; safe across threads."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else default_cache_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # One connection per cache, used under a lock: asyncio tasks and worker
        # threads of one process share it; other processes get SQLite's own locking.
        self._db = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_SCHEMA)
        self._db.commit()

    def get(self, key: str) -> Reply | None:
        with self._lock:
            row = self._db.execute("SELECT raw, tokens_in, tokens_out, cost_usd, latency_s "
                                   "FROM replies WHERE key = ?", (key,)).fetchone()
        return Reply(*row) if row else None

    def put(self, key: str, reply: Reply, *, backend: str = "", model: str = "",
            prompt_version: str = "", request: MineRequest | None = None) -> None:
        row = (key, backend, model, prompt_version, request.task if request else "",
               request.key if request else "", reply.raw, reply.tokens_in, reply.tokens_out,
               reply.cost_usd, reply.latency_s, time.time())
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO replies VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                             row)
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM replies").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
