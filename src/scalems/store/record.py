"""The task record: one SQLite database (``record.sqlite``) in WAL mode.

SQLite gives atomic multi-row commits and survives a killed process (WAL
recovery is automatic on the next open). ``synchronous=NORMAL`` skips the
fsync per commit: a process crash loses nothing committed, only power loss
could, and that is not worth an fsync per batch.

Writes are buffered and committed in batches (every ``batch_size`` records,
after ``max_delay`` seconds, on :meth:`Record.flush` and on close) because a
commit per task would cap an ensemble at a few thousand tasks per second. A
background thread honours ``max_delay`` even when no further write arrives, so
the completion of a long task is committed within ``max_delay`` rather than at
the next completion. A crash loses at most the unflushed tail, and losing it
only means re-running that work: every record refers to files that were
stored before it was buffered.

Once a record is ``complete`` it is final: re-recording the uid with other
content raises DuplicateKeyError (a uid is a fingerprint of the work, so two
different results for one uid reveal a fingerprint bug), unless the record is
first dropped with :meth:`Record.forget`.
"""

from __future__ import annotations

__all__ = ("TaskRecord", "Record", "SCHEMA_VERSION", "COMPLETE")

import gc
import json
import logging
import os
import sqlite3
import threading
import time
import typing

from scalems.exceptions import DuplicateKeyError, StoreError
from .files import FileRecord
from .history import ATTEMPT_UPSTREAM_MIGRATION, HISTORY_SCHEMA

logger = logging.getLogger(__name__)

#: ``PRAGMA user_version`` of the database layout written by this module
#: (2: the run history of :mod:`.history` was added; 3: each attempt row names the tasks it took
#: input from, for ``python -m scalems forget``; an older record is brought up to date when opened).
SCHEMA_VERSION = 3
#: The state that makes a record final.
COMPLETE = "complete"

_SCHEMA = """
CREATE TABLE task (
    uid     TEXT PRIMARY KEY NOT NULL,
    label   TEXT NOT NULL,
    kind    TEXT NOT NULL,
    state   TEXT NOT NULL,
    result  BLOB,
    files   TEXT NOT NULL,   -- JSON object: output name -> [sha256, size]
    error   TEXT,
    updated REAL NOT NULL    -- seconds since the epoch
);
CREATE TABLE digest_memo (   -- content digests of input files, valid while the stat key matches
    path      TEXT PRIMARY KEY NOT NULL,
    dev       INTEGER NOT NULL,
    ino       INTEGER NOT NULL,
    size      INTEGER NOT NULL,
    mtime_ns  INTEGER NOT NULL,
    hashed_ns INTEGER NOT NULL,
    digest    TEXT NOT NULL
);
"""
_COLUMNS = "uid, label, kind, state, result, files, error, updated"
#: Complete records with results up to this size are read in one query when the record is
#: first consulted, so a re-run of a large ensemble does not pay one query per task.
PRELOAD_RESULT_MAX = 4096
# Bound parameters per bulk query: below SQLITE_MAX_VARIABLE_NUMBER (999) of old SQLite builds.
_CHUNK = 900

_FORGOTTEN = object()


class TaskRecord(typing.NamedTuple):
    """What the store knows about one task (by fingerprint uid). Field order is the table's column order."""

    uid: str
    label: str
    kind: str
    state: str
    result: typing.Optional[bytes]
    files: dict[str, FileRecord]
    error: typing.Optional[str]
    updated: float


_ENCODER = json.JSONEncoder(separators=(",", ":"))  # reused: json.dumps(separators=...) builds one per call


def _encode_files(files: dict[str, FileRecord]) -> str:
    if not files:
        return "{}"
    return _ENCODER.encode({name: [f.digest, f.size] for name, f in files.items()})


_tuple_new = tuple.__new__  # builds a named tuple from a sequence without per-field arguments


def _decode_files(text: str) -> dict:
    return {name: _tuple_new(FileRecord, pair) for name, pair in json.loads(text).items()}


def _decode(row) -> TaskRecord:
    """Row to record (bulk reads decode 100k rows, so no per-field keyword arguments)."""
    if row[5] == "{}":
        return _tuple_new(TaskRecord, (*row[:5], {}, *row[6:]))
    return _tuple_new(TaskRecord, (*row[:5], _decode_files(row[5]), *row[6:]))


def _row(rec: TaskRecord) -> tuple:
    return (*rec[:5], _encode_files(rec.files), *rec[6:])


def _int64(value: int) -> int:
    """st_dev/st_ino are unsigned 64-bit; SQLite integers are signed."""
    return value - (1 << 64) if value >= (1 << 63) else value


class Record:
    """The buffered, thread-safe task record. Not usable across fork()."""

    def __init__(self, db_path: os.PathLike, *, batch_size: int = 500, max_delay: float = 0.2):
        self.db_path = os.fspath(db_path)
        self.batch_size = batch_size
        self.max_delay = max_delay
        self._conn: typing.Optional[sqlite3.Connection] = None
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        # uid -> TaskRecord, or _FORGOTTEN for a buffered delete. Latest write per uid wins.
        self._pending: dict[str, typing.Any] = {}
        # path -> memo row (without path)
        self._pending_memo: dict[str, tuple] = {}
        # SQL statement -> rows for it (the run history), committed with the rest.
        self._pending_rows: dict[str, list] = {}
        self._row_count = 0
        # uid -> None for every committed row (loaded on first use), or the row's
        # (kind, result, files) read ahead for get_complete(), handed out once.
        self._stored: typing.Optional[dict[str, typing.Optional[tuple]]] = None
        self._oldest = 0.0  # time.monotonic() of the oldest buffered write
        self._flusher: typing.Optional[threading.Thread] = None
        self._closing = False
        self._flush_error: typing.Optional[BaseException] = None

    # --- life cycle ---

    def open(self):
        new = not os.path.exists(self.db_path) or os.path.getsize(self.db_path) == 0  # the store's lock is held
        try:
            conn = sqlite3.connect(self.db_path, isolation_level=None, check_same_thread=False, timeout=10.0)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the task record {self.db_path}: {exc}") from exc
        try:
            if new:
                # A new record holds nothing to lose: switch it to WAL and write its schema without
                # the six fsyncs that costs (a few ms of every first run). Should the OS crash
                # meanwhile, the torn WAL is ignored and the next open writes the schema again.
                conn.execute("PRAGMA synchronous=OFF")
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                logger.warning("The task record %s could not use WAL mode (got %s).", self.db_path, mode)
            # Re-runs look up every uid: read pages through mmap and keep more of them cached.
            conn.execute("PRAGMA mmap_size=268435456")
            conn.execute("PRAGMA cache_size=-32768")
            # Checkpoints fsync; with bursts of batches, fewer and larger ones are cheaper.
            conn.execute("PRAGMA wal_autocheckpoint=4000")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version < SCHEMA_VERSION:
                conn.execute("BEGIN IMMEDIATE")
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                schema = {
                    0: _SCHEMA + HISTORY_SCHEMA,
                    1: HISTORY_SCHEMA,
                    2: ATTEMPT_UPSTREAM_MIGRATION,
                }.get(version, "")
                for statement in schema.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version={max(version, SCHEMA_VERSION)}")
                conn.execute("COMMIT")
            elif version > SCHEMA_VERSION:
                raise StoreError(
                    f"The task record {self.db_path} has layout version {version}, written by a newer "
                    f"scalems (this one reads up to {SCHEMA_VERSION}). Upgrade scalems or use another work directory."
                )
            conn.execute("PRAGMA synchronous=NORMAL")  # for every task result from here on
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StoreError(
                f"The task record {self.db_path} is damaged or not a scalems record ({exc}). "
                "Move the work directory aside to start afresh."
            ) from exc
        except BaseException:
            conn.close()
            raise
        with self._lock:
            self._conn = conn
            self._closing = False
            self._flush_error = None
            self._stored = None  # another run may have written since this object last looked

    def close(self):
        """Commit what is buffered and close. Idempotent."""
        with self._lock:
            if self._conn is None:
                return
            self._closing = True
            self._cond.notify_all()
            flusher = self._flusher
        if flusher is not None and flusher is not threading.current_thread():
            flusher.join()
        with self._lock:
            if self._conn is None:
                return
            try:
                self._flush_locked()
            finally:
                conn, self._conn = self._conn, None
                self._pending.clear()
                self._pending_memo.clear()
                self._pending_rows.clear()
                conn.close()  # checkpoints the WAL into the database

    def abandon(self) -> typing.Optional[sqlite3.Connection]:
        """In a forked child: forget the connection without closing it (closing could disturb the parent)."""
        conn, self._conn = self._conn, None
        self._pending = {}
        self._pending_memo = {}
        self._pending_rows = {}
        self._stored = None
        self._flusher = None
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        return conn

    # --- tasks ---

    def _stored_uids(self) -> dict:
        """Uids that have a committed row (as dict keys); lets lookups of new work skip the database.

        The values read ahead the results of complete function tasks (small ones):
        a re-run asks for nearly all of them, and one query beats thousands. Other
        rows map to None and are read when asked for.
        """
        if self._stored is None:
            conn = self._conn
            # Rows are consumed as the cursor yields them: fetchall() would hold every row tuple
            # at once, and 10,000 new container objects set off ten garbage collections.
            stored = dict(
                conn.execute(
                    "SELECT uid, result FROM task WHERE state=? AND kind='function' AND result IS NOT NULL "
                    "AND length(result) <= ?",
                    (COMPLETE, PRELOAD_RESULT_MAX),
                )
            )
            others = conn.execute(
                "SELECT uid FROM task WHERE NOT (state=? AND kind='function' AND result IS NOT NULL "
                "AND length(result) <= ?)",
                (COMPLETE, PRELOAD_RESULT_MAX),
            )
            stored.update(dict.fromkeys(uid for (uid,) in others))
            self._stored = stored
        return self._stored

    def get(self, uid: str) -> typing.Optional[TaskRecord]:
        with self._lock:
            found = self._pending.get(uid)
            if found is not None:
                return None if found is _FORGOTTEN else found
            if uid not in self._stored_uids():
                return None
            row = self._conn.execute(f"SELECT {_COLUMNS} FROM task WHERE uid=?", (uid,)).fetchone()
        return None if row is None else _decode(row)

    def get_complete(self, uid: str) -> typing.Optional[tuple]:
        """``(kind, result, files)`` of a complete record of *uid*, or None: the result-cache lookup."""
        # The common case of a re-run, without the lock: a result read ahead and not handed out yet.
        # A commit for *uid* replaces its read-ahead entry with None before it leaves _pending,
        # so a uid absent from _pending with a read-ahead result still has that result.
        stored = self._stored
        if stored is not None and uid not in self._pending:
            result = stored.get(uid)
            if result is not None:
                stored[uid] = None  # handed out once: read-ahead copies must not pile up
                return "function", result, {}
        with self._lock:
            found = self._pending.get(uid)
            if found is not None:
                if found is _FORGOTTEN or found.state != COMPLETE:
                    return None
                return found.kind, found.result, found.files
            stored = self._stored_uids()
            if uid not in stored:
                return None
            result = stored[uid]
            if result is not None:
                stored[uid] = None  # handed out once: read-ahead copies must not pile up
                return "function", result, {}
            row = self._conn.execute(
                "SELECT kind, result, files FROM task WHERE uid=? AND state=?", (uid, COMPLETE)
            ).fetchone()
        if row is None:
            return None
        kind, result, files = row
        return kind, result, (_decode_files(files) if files != "{}" else {})

    def get_many(self, uids: typing.Iterable[str]) -> dict[str, TaskRecord]:
        """Records for those of *uids* that have one (missing uids are absent from the result)."""
        found: dict[str, TaskRecord] = {}
        rows: list = []
        # Nothing here creates reference cycles, but 100k new rows and records would trigger
        # full collections (traversing every earlier result too) that more than double the time.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            with self._lock:
                pending = self._pending
                wanted = []
                for uid in uids:
                    hit = pending.get(uid)
                    if hit is None:
                        wanted.append(uid)
                    elif hit is not _FORGOTTEN:
                        found[uid] = hit
                conn = self._conn
                for start in range(0, len(wanted), _CHUNK):
                    chunk = wanted[start : start + _CHUNK]
                    marks = ",".join("?" * len(chunk))
                    rows.extend(conn.execute(f"SELECT {_COLUMNS} FROM task WHERE uid IN ({marks})", chunk))
            for row in rows:  # decoded outside the lock: writers need not wait for this
                found[row[0]] = _decode(row)
        finally:
            if gc_was_enabled:
                gc.enable()
        return found

    def put(self, rec: TaskRecord):
        """Buffer a record; commit the buffer if it is full or old. Raises DuplicateKeyError (see module)."""
        with self._lock:
            self._raise_flush_error()
            previous = self._pending.get(rec.uid)
            if previous is None and rec.uid in self._stored_uids():
                row = self._conn.execute(
                    "SELECT state, kind, result, files, label FROM task WHERE uid=?", (rec.uid,)
                ).fetchone()
                if row is not None and row[0] == COMPLETE:
                    files = {n: FileRecord(d, s) for n, (d, s) in json.loads(row[3]).items()}
                    if (rec.state, rec.kind, rec.result, rec.files) == (row[0], row[1], row[2], files):
                        return
                    self._refuse(rec, row[4])
            elif previous is not None and previous is not _FORGOTTEN and previous.state == COMPLETE:
                if (rec.state, rec.kind, rec.result, rec.files) == (
                    previous.state,
                    previous.kind,
                    previous.result,
                    previous.files,
                ):
                    return
                self._refuse(rec, previous.label)
            self._pending[rec.uid] = rec
            self._wrote()

    @staticmethod
    def _refuse(rec: TaskRecord, label: str):
        raise DuplicateKeyError(
            f"Task {rec.label!r} (uid {rec.uid}) would replace the complete record of task {label!r} "
            f"with different content (state {rec.state!r}). Two tasks with one fingerprint must do the same "
            "work; to redo a task, forget its record first."
        )

    def forget(self, uid: str):
        with self._lock:
            self._raise_flush_error()
            self._pending[uid] = _FORGOTTEN
            self._wrote()

    def iter_all(self, chunk: int = 1000) -> typing.Iterator[TaskRecord]:
        """All committed records by uid, read in chunks so the lock is not held while the caller works."""
        self.flush()
        last = ""
        while True:
            with self._lock:
                if self._conn is None:
                    raise StoreError(f"the task record {self.db_path} was closed during iteration")
                rows = self._conn.execute(
                    f"SELECT {_COLUMNS} FROM task WHERE uid > ? ORDER BY uid LIMIT ?", (last, chunk)
                ).fetchall()
            if not rows:
                return
            for row in rows:
                yield _decode(row)
            last = rows[-1][0]

    def count(self) -> int:
        self.flush()
        with self._lock:
            return self._conn.execute("SELECT count(*) FROM task").fetchone()[0]

    # --- input digest memo ---

    def memo_get(self, path: str) -> typing.Optional[tuple]:
        """(dev, ino, size, mtime_ns, hashed_ns, digest) last recorded for *path*."""
        with self._lock:
            hit = self._pending_memo.get(path)
            if hit is not None:
                return hit
            row = self._conn.execute(
                "SELECT dev, ino, size, mtime_ns, hashed_ns, digest FROM digest_memo WHERE path=?", (path,)
            ).fetchone()
        return row

    def memo_put(self, path: str, dev: int, ino: int, size: int, mtime_ns: int, hashed_ns: int, digest: str):
        with self._lock:
            self._pending_memo[path] = (_int64(dev), _int64(ino), size, mtime_ns, hashed_ns, digest)
            self._wrote()

    # --- other tables (the run history) ---

    def append(self, statement: str, *rows: tuple) -> None:
        """Buffer rows for *statement* (an INSERT of :mod:`.history`), committed with the next batch."""
        with self._lock:
            pending = self._pending_rows.get(statement)
            if pending is None:
                pending = self._pending_rows[statement] = []
            pending.extend(rows)
            self._row_count += len(rows)
            self._wrote(len(rows))

    def scalar(self, query: str, parameters: tuple = ()):
        """The first column of the first row of a read query over committed data."""
        self.flush()
        with self._lock:
            row = self._conn.execute(query, parameters).fetchone()
        return None if row is None else row[0]

    # --- batching ---

    def _wrote(self, added: int = 1):
        """Bookkeeping after buffering *added* writes (lock held)."""
        now = time.monotonic()
        size = len(self._pending) + len(self._pending_memo) + self._row_count
        if size == added:  # the buffer was empty
            self._oldest = now
            if self._flusher is None:
                self._flusher = threading.Thread(
                    target=self._flusher_main, name=f"scalems-store-flush:{self.db_path}", daemon=True
                )
                self._flusher.start()
            else:
                self._cond.notify()
        elif size >= self.batch_size or now - self._oldest >= self.max_delay:
            self._flush_locked()

    def flush(self):
        """Commit everything buffered, in one transaction."""
        with self._lock:
            if self._conn is None:
                raise StoreError(f"the task record {self.db_path} is closed")
            self._flush_locked()

    def _raise_flush_error(self):
        error, self._flush_error = self._flush_error, None
        if error is not None:
            # The buffer was kept; try again now and report if it still fails.
            self._flush_locked()

    def _flush_locked(self):
        if not self._pending and not self._pending_memo and not self._pending_rows:
            return
        conn = self._conn
        records, forgotten = [], []
        for uid, rec in self._pending.items():
            if rec is _FORGOTTEN:
                forgotten.append((uid,))
            else:
                records.append(_row(rec))
        memo = [(path, *values) for path, values in self._pending_memo.items()]
        try:
            conn.execute("BEGIN IMMEDIATE")
            if forgotten:
                conn.executemany("DELETE FROM task WHERE uid=?", forgotten)
            if records:
                conn.executemany(
                    f"INSERT OR REPLACE INTO task ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?)", records
                )
            if memo:
                conn.executemany("INSERT OR REPLACE INTO digest_memo VALUES (?,?,?,?,?,?,?)", memo)
            for statement, rows in self._pending_rows.items():
                conn.executemany(statement, rows)
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"cannot commit to the task record {self.db_path}: {exc}") from exc
            raise
        if self._stored is not None:
            # Before the rows leave _pending: the lock-free path of get_complete relies on that order.
            stored = self._stored
            for uid, rec in self._pending.items():
                if rec is _FORGOTTEN:
                    stored.pop(uid, None)
                else:
                    stored[uid] = None  # committed; a read-ahead copy would be stale
        self._pending.clear()
        self._pending_memo.clear()
        self._pending_rows.clear()
        self._row_count = 0

    def _flusher_main(self):
        """Commit the buffer once its oldest write is max_delay old; exit after a quiet spell."""
        with self._lock:
            try:
                while not self._closing and self._conn is not None:
                    if not self._pending and not self._pending_memo and not self._pending_rows:
                        if not self._cond.wait(timeout=max(1.0, 5 * self.max_delay)):
                            if not self._pending and not self._pending_memo and not self._pending_rows:
                                return
                        continue
                    delay = self._oldest + self.max_delay - time.monotonic()
                    if delay > 0:
                        self._cond.wait(timeout=delay)
                        continue
                    try:
                        self._flush_locked()
                    except Exception as exc:  # reported by the next foreground call
                        logger.warning("Committing the task record %s failed: %s", self.db_path, exc)
                        self._flush_error = exc
                        self._cond.wait(timeout=self.max_delay)
            finally:
                if self._flusher is threading.current_thread():
                    self._flusher = None
