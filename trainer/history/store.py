"""The run history: one row per train and eval run in an embedded SQLite database.

Standard library ``sqlite3``: no server, one file (default ``outputs/history.sqlite``, config key
``history.path``). Parallel sweep jobs append at the same time: the database runs in WAL mode
with a busy timeout, and a write that still meets ``database is locked`` is retried with backoff.
WAL needs shared memory, which network file systems (NFS) lack; for a database shared by several
nodes set ``history.journal_mode=delete`` (SQLite's rollback journal, which relies on the file
system's locks). Only rank zero writes (``record_run`` is ``rank_zero_only``).

A metric that is not a finite number (nan: e.g. the AUROC or recall of a class absent from the
split) is stored as JSON ``null``: JSON has no nan, and SQLite's json functions refuse the
``NaN`` Python writes. ``regressions`` never takes such a value as a best.

    from trainer.history.store import RunHistory
    rows = RunHistory("outputs/history.sqlite").runs(backbone="resnet18")
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import sqlite3
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from trainer.errors import ConfigError
from trainer.utils.clock import stamp_utc
from trainer.utils.jsonsafe import strict_json

COLUMNS = {
    "run_id": "TEXT PRIMARY KEY",
    "started_utc": "TEXT",
    "ended_utc": "TEXT",
    "task": "TEXT",
    "experiment": "TEXT",
    "tags": "TEXT",  # JSON list
    "command": "TEXT",
    "overrides": "TEXT",  # JSON list
    "git_commit": "TEXT",
    "git_dirty": "INTEGER",
    "config_digest": "TEXT",
    "data_fingerprint": "TEXT",
    "backbone": "TEXT",
    "metrics": "TEXT",  # JSON object
    "checkpoint": "TEXT",
    "gate": "TEXT",  # "passed" | "failed" | "off"
    "output_dir": "TEXT",
}
JSON_COLUMNS = ("tags", "overrides", "metrics")
RETRIES = 20


def new_run_id() -> str:
    """Sortable by time, unique across processes and nodes."""
    return f"{stamp_utc()}-{uuid.uuid4().hex[:8]}"


def config_digest(config: Mapping[str, Any]) -> str:
    """sha256 of the resolved config as canonical JSON: equal digests, equal settings."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class RunHistory:
    """The history database at ``path`` (created on first write).

    Args:
        path: the SQLite file.
        journal_mode: ``wal`` (default; one machine, many processes) or ``delete`` (shared NFS).
        timeout_s: how long one statement waits for another writer's lock.
    """

    def __init__(self, path: str | Path, journal_mode: str = "wal", timeout_s: float = 30.0):
        self.path = Path(path).expanduser()
        if journal_mode.lower() not in ("wal", "delete", "truncate", "persist"):
            raise ConfigError(f"history.journal_mode: '{journal_mode}' is not wal or delete")
        self.journal_mode = journal_mode.lower()
        self.timeout_s = timeout_s

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=self.timeout_s)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout_s * 1000)}")
            yield conn
        finally:
            conn.close()

    def _retry(self, fn: Any) -> Any:
        """Run ``fn(conn)``, retrying when another process holds the lock past the timeout."""
        for attempt in range(RETRIES):
            try:
                with self._connect() as conn:
                    return fn(conn)
            except sqlite3.OperationalError as err:
                lock = "locked" in str(err) or "busy" in str(err)
                if not lock or attempt == RETRIES - 1:
                    raise
                time.sleep(min(2.0, 0.05 * 2**attempt) * (0.5 + random.random()))
        return None

    def _create(self, conn: sqlite3.Connection) -> None:
        conn.execute(f"PRAGMA journal_mode = {self.journal_mode}")
        cols = ", ".join(f"{name} {kind}" for name, kind in COLUMNS.items())
        with conn:
            conn.execute(f"CREATE TABLE IF NOT EXISTS runs ({cols})")
            conn.execute("CREATE INDEX IF NOT EXISTS runs_started ON runs (started_utc)")

    def append(self, record: Mapping[str, Any]) -> str:
        """Insert one run; JSON columns are serialised here. Returns its run id."""
        row = {name: record.get(name) for name in COLUMNS}
        row["run_id"] = row["run_id"] or new_run_id()
        for name in JSON_COLUMNS:
            row[name] = json.dumps(strict_json(row[name]), default=str)
        if row["git_dirty"] is not None:
            row["git_dirty"] = int(bool(row["git_dirty"]))

        def insert(conn: sqlite3.Connection) -> None:
            self._create(conn)
            with conn:  # one transaction: the row is there whole or not at all
                conn.execute(
                    f"INSERT INTO runs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                    list(row.values()),
                )

        self._retry(insert)
        return row["run_id"]

    def runs(
        self,
        task: str | None = None,
        experiment: str | None = None,
        tag: str | None = None,
        fingerprint: str | None = None,
        backbone: str | None = None,
    ) -> list[dict[str, Any]]:
        """Runs in start order, filtered (``fingerprint`` matches a prefix)."""
        if not self.path.is_file():
            return []
        where, args = [], []
        for column, value in (("task", task), ("experiment", experiment), ("backbone", backbone)):
            if value:
                where.append(f"{column} = ?")
                args.append(value)
        if fingerprint:
            where.append("data_fingerprint LIKE ?")
            args.append(f"{fingerprint}%")
        sql = "SELECT * FROM runs" + (f" WHERE {' AND '.join(where)}" if where else "")
        sql += " ORDER BY started_utc, run_id"
        rows = self._retry(lambda conn: [dict(r) for r in conn.execute(sql, args)])
        out = [self._decode(r) for r in rows]
        return [r for r in out if not tag or tag in (r["tags"] or [])]

    def get(self, run_id: str) -> dict[str, Any] | None:
        """One run by id or unique id prefix."""
        matches = [r for r in self.runs() if r["run_id"].startswith(run_id)]
        return matches[0] if len(matches) == 1 else None

    @staticmethod
    def _decode(row: dict[str, Any]) -> dict[str, Any]:
        for name in JSON_COLUMNS:
            row[name] = json.loads(row[name]) if row[name] else None
        return row


def regressions(
    runs: list[dict[str, Any]], metric: str, margin: float, higher_is_better: bool = True
) -> list[dict[str, Any]]:
    """Runs worse than the best earlier run on the same data fingerprint by more than ``margin``.

    A value that is not a finite number (None, nan, inf) is skipped: nan compares false with
    everything, so as a best it would hide every later regression.

    Returns one entry per flagged run: ``run``, ``value``, ``best`` and ``best_run``.
    """
    best: dict[str, tuple[float, str]] = {}
    flagged = []
    for run in runs:
        value = (run.get("metrics") or {}).get(metric)
        key = run.get("data_fingerprint") or ""
        if not _finite(value):
            continue
        sign = 1 if higher_is_better else -1
        if key in best and sign * (best[key][0] - value) > margin:
            flagged.append(
                {"run": run, "value": value, "best": best[key][0], "best_run": best[key][1]}
            )
        if key not in best or sign * (value - best[key][0]) > 0:
            best[key] = (value, run["run_id"])
    return flagged


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def record_run(
    path: str | Path, record: Mapping[str, Any], journal_mode: str = "wal"
) -> str | None:
    """Append ``record`` to the history at ``path`` on rank zero; other ranks return None.

    Lightning's ``rank_zero_only.rank`` is imported here, not at the top, so that reading the
    history (scripts/history.py) does not pay for importing Lightning.
    """
    from lightning.pytorch.utilities import rank_zero_only

    if rank_zero_only.rank != 0:
        return None
    return RunHistory(path, journal_mode).append(record)
