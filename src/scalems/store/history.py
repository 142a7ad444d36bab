"""The run history: what each run of a work directory did, attempt by attempt.

Two tables beside the task record, in the same SQLite database and written
through the same buffered commits (:meth:`Record.append`), so keeping them
costs a run one row per attempt:

* ``run``: one row per run (when, where, which backend and budget), its task
  counts (refreshed while it runs) and, when it ends, which tasks it had and
  how each ended.
* ``attempt``: one row per finished attempt of a task: start and end times,
  host, where it ran (cores, worker, RP task), how it ended.

:class:`HistoryReader` reads them without the work directory's lock (SQLite's
WAL lets readers and the writing run proceed together): ``python -m scalems
status`` and ``report`` use it, also while a run is live.
"""

from __future__ import annotations

__all__ = (
    "HISTORY_SCHEMA",
    "ATTEMPT_INSERT",
    "ATTEMPT_UPSTREAM_MIGRATION",
    "RUN_UPSERT",
    "HistoryReader",
    "RunInfo",
    "AttemptInfo",
    "UID_LENGTH",
    "split_uids",
    "UID_PREFIX",
)

import json
import os
import sqlite3
import typing

from scalems.exceptions import StoreError

HISTORY_SCHEMA = """
CREATE TABLE IF NOT EXISTS run (
    id       INTEGER PRIMARY KEY,
    started  REAL NOT NULL,
    ended    REAL,              -- NULL while the run is live (or if it was killed)
    pid      INTEGER NOT NULL,
    host     TEXT NOT NULL,
    backend  TEXT NOT NULL,
    budget   TEXT NOT NULL,     -- JSON: {"cores": n, "gpus": n} (null where the backend queues work itself)
    counts   TEXT NOT NULL,     -- JSON: tasks added, cached, and in each state
    running  TEXT NOT NULL,     -- JSON: labels of the tasks running at the last refresh
    tasks    TEXT               -- JSON, at the end: [[uid, label, kind, state, cached, error], ...]
);
CREATE TABLE IF NOT EXISTS attempt (
    uid      TEXT NOT NULL,
    run      INTEGER NOT NULL,
    attempt  INTEGER NOT NULL,
    label    TEXT NOT NULL,
    kind     TEXT NOT NULL,
    started  REAL NOT NULL,
    ended    REAL NOT NULL,
    host     TEXT NOT NULL,
    place    TEXT,              -- where it ran: "cores 0-1", "worker 4242", an RP task id
    outcome  TEXT NOT NULL,     -- done, failed, timeout, cancelled
    exitcode INTEGER,
    error    TEXT,
    upstream TEXT               -- uids (64 characters each, concatenated) of the tasks it took input from,
                                -- NULL where recorded before layout 3 (no semicolons in these comments)
    -- No key: an index on 64-character uids made every insert of a large run slower, and only
    -- status and report read this table, one run at a time.
);
"""

ATTEMPT_INSERT = "INSERT INTO attempt VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
#: Brings a layout-2 ``attempt`` table to layout 3 (see :data:`scalems.store.record.SCHEMA_VERSION`).
ATTEMPT_UPSTREAM_MIGRATION = "ALTER TABLE attempt ADD COLUMN upstream TEXT"
RUN_UPSERT = (
    "INSERT INTO run (id, started, ended, pid, host, backend, budget, counts, running, tasks) "
    "VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET ended=excluded.ended, "
    "counts=excluded.counts, running=excluded.running, tasks=excluded.tasks"
)


class RunInfo(typing.NamedTuple):
    id: int
    started: float
    ended: typing.Optional[float]
    pid: int
    host: str
    backend: str
    budget: dict
    counts: dict
    running: list
    tasks: typing.Optional[list]


class AttemptInfo(typing.NamedTuple):
    uid: str
    run: int
    attempt: int
    label: str
    kind: str
    started: float
    ended: float
    host: str
    place: typing.Optional[str]
    outcome: str
    exitcode: typing.Optional[int]
    error: typing.Optional[str]
    #: Concatenated uids of the tasks this one took input from ("" none, None not recorded).
    upstream: typing.Optional[str] = None


#: Length of a task uid (a sha256 hex digest): lists of uids in the history are concatenated.
UID_LENGTH = 64


#: Digits of a uid by which a run lists the tasks it found done in the record (64 bits: with
#: 100,000 tasks in a record, two sharing them is a one-in-a-billion event).
UID_PREFIX = 16


def split_uids(text: typing.Optional[str], length: int = UID_LENGTH) -> typing.List[str]:
    """The uids of a concatenated list (as the history stores them: a separator would only cost space)."""
    if not text:
        return []
    return [text[i : i + length] for i in range(0, len(text), length)]


class HistoryReader:
    """Read-only access to a work directory's run history (never takes the work directory's lock)."""

    def __init__(self, db_path: os.PathLike):
        path = os.fspath(db_path)
        if not os.path.exists(path):
            raise StoreError(f"{path} does not exist: no workflow has run in this work directory")
        try:
            self._conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10.0)
            tables = {row[0] for row in self._conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            columns = set()
            if "attempt" in tables:
                columns = {row[1] for row in self._conn.execute("PRAGMA table_info(attempt)")}
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot read the task record {path}: {exc}") from exc
        self._has_history = {"run", "attempt"} <= tables
        self._has_task = "task" in tables
        # Layout 2 records (before the upstream column) are read as they are: this reader never migrates.
        self._has_upstream = "upstream" in columns
        fields = AttemptInfo._fields if self._has_upstream else AttemptInfo._fields[:-1]
        self._attempt_columns = ", ".join(fields)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def runs(self) -> typing.List[RunInfo]:
        if not self._has_history:
            return []
        rows = self._conn.execute(f"SELECT {', '.join(RunInfo._fields)} FROM run ORDER BY id").fetchall()
        return [_run(row) for row in rows]

    def run(self, run_id: typing.Optional[int] = None) -> typing.Optional[RunInfo]:
        """Run *run_id*, or the latest run if None (without reading the task lists of the others)."""
        if not self._has_history:
            return None
        query = f"SELECT {', '.join(RunInfo._fields)} FROM run"
        if run_id is None:
            row = self._conn.execute(query + " ORDER BY id DESC LIMIT 1").fetchone()
        else:
            row = self._conn.execute(query + " WHERE id=?", (run_id,)).fetchone()
        return None if row is None else _run(row)

    def latest_run(self) -> typing.Optional[RunInfo]:
        return self.run()

    def run_ids(self) -> typing.List[int]:
        if not self._has_history:
            return []
        return [row[0] for row in self._conn.execute("SELECT id FROM run ORDER BY id")]

    def attempts(self, run: typing.Optional[int] = None) -> typing.List[AttemptInfo]:
        """Attempts of run *run* (all runs if None), in the order they started."""
        if not self._has_history:
            return []
        query = f"SELECT {self._attempt_columns} FROM attempt"
        if run is not None:
            rows = self._conn.execute(query + " WHERE run=? ORDER BY started", (run,)).fetchall()
        else:
            rows = self._conn.execute(query + " ORDER BY started").fetchall()
        return [AttemptInfo(*row) for row in rows]

    def complete_uids(self, prefixes: typing.Sequence[str]) -> typing.List[str]:
        """The whole uids in the task record that begin with *prefixes* (see :data:`UID_PREFIX`)."""
        if not prefixes:
            return []
        wanted = set(prefixes)
        whole = {}
        for (uid,) in self._conn.execute("SELECT uid FROM task"):
            prefix = uid[:UID_PREFIX]
            if prefix in wanted:
                whole[prefix] = uid
        return [whole.get(prefix, prefix) for prefix in prefixes]

    def tasks(self, uids: typing.Iterable[str]) -> dict:
        """``uid -> (label, kind, state, error)`` from the task record, for those of *uids* it has."""
        found = {}
        wanted = list(uids)
        for start in range(0, len(wanted), 900):
            chunk = wanted[start : start + 900]
            marks = ",".join("?" * len(chunk))
            for uid, label, kind, state, error in self._conn.execute(
                f"SELECT uid, label, kind, state, error FROM task WHERE uid IN ({marks})", chunk
            ):
                found[uid] = (label, kind, state, error)
        return found

    def names(self, uids: typing.Iterable[str]) -> dict:
        """``uid -> (label, kind)`` from the attempts of any run, for those of *uids* that ever ran.

        Names tasks whose record is gone (``python -m scalems forget``) or that a run found cached.
        """
        found = {}
        if not self._has_history:
            return found
        wanted = list(uids)
        for start in range(0, len(wanted), 900):
            chunk = wanted[start : start + 900]
            marks = ",".join("?" * len(chunk))
            for uid, label, kind in self._conn.execute(
                f"SELECT uid, label, kind FROM attempt WHERE uid IN ({marks}) ORDER BY run", chunk
            ):
                found[uid] = (label, kind)  # the latest run's label wins
        return found

    def labels(self) -> typing.Set[str]:
        """Every label that an attempt of any run had."""
        if not self._has_history:
            return set()
        return {row[0] for row in self._conn.execute("SELECT DISTINCT label FROM attempt")}

    def records(self) -> typing.Iterator[typing.Tuple[str, str, str, str]]:
        """``(uid, label, kind, state)`` of every task record (complete results and recorded failures)."""
        if not self._has_task:
            return iter(())
        return iter(self._conn.execute("SELECT uid, label, kind, state FROM task"))

    def dependencies(self) -> typing.Iterator[typing.Tuple[str, str]]:
        """``(uid, upstream)`` of every task that took input from others, as its attempts recorded it."""
        if not (self._has_history and self._has_upstream):
            return iter(())
        return iter(self._conn.execute("SELECT DISTINCT uid, upstream FROM attempt WHERE upstream != ''"))

    def without_dependencies(self) -> typing.Set[str]:
        """Uids of complete records whose inputs the history does not know (recorded before layout 3)."""
        if not self._has_task:
            return set()
        if not (self._has_history and self._has_upstream):
            return {row[0] for row in self._conn.execute("SELECT uid FROM task WHERE state='complete'")}
        return {
            row[0]
            for row in self._conn.execute(
                "SELECT uid FROM task WHERE state='complete' "
                "AND uid NOT IN (SELECT uid FROM attempt WHERE upstream IS NOT NULL)"
            )
        }


def _run(row) -> RunInfo:
    values = list(row)
    for index in (6, 7, 8, 9):
        if values[index] is not None:
            values[index] = json.loads(values[index])
    return RunInfo(*values)
