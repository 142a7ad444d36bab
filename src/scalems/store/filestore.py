"""FileStore: the store of one work directory, ``<work_dir>/scalems_0_0/``.

Layout (the directory name carries the layout version)::

    scalems_0_0/
        lock            flock'ed by the owning process (lock.py)
        owner.json      who owns it; removed on a clean close
        record.sqlite   task records, the input-digest memo (record.py) and the run history
                        (history.py), + -wal/-shm
        files/<aa>/<sha256>   content-addressed files (files.py)
        tmp/            temporaries, renamed into files/ when complete

The ordering that keeps a crash harmless: files are renamed into ``files/``
before :meth:`FileStore.record_task` accepts a record naming them (it checks),
and records are committed after that. So a committed record never names a
missing or partial file, whatever instant the process is killed at.
"""

from __future__ import annotations

__all__ = ("FileStore", "LAYOUT")

import atexit
import hashlib
import logging
import os
import pathlib
import stat
import threading
import time
import typing

from scalems.exceptions import StoreError
from .files import ContentStore, FileRecord, hash_file
from .history import ATTEMPT_INSERT, RUN_UPSERT
from .lock import OwnerLock
from .record import Record, TaskRecord

logger = logging.getLogger(__name__)

#: Name of the store directory inside a work directory (scalems_<major>_<minor> of the layout).
LAYOUT = "scalems_0_0"

# A digest memo entry is trusted only if the file's mtime is at least this much older than the
# moment it was hashed: a write within the filesystem's timestamp granularity (up to 2 s on some
# filesystems) can leave size and mtime unchanged.
_RACY_NS = 2_000_000_000

# Strong references: a store dropped without close() stays open until exit, where its buffer is committed.
_OPEN_STORES: "set[FileStore]" = set()
_FORK_ORPHANS: list = []  # connections inherited by a forked child: never closed, never used


class FileStore:
    """One work directory's store: content-addressed files plus the task record.

    Create, then :meth:`open` (or use as a context manager). One process at a
    time may have it open. Methods may be called from any thread, one at a
    time for the record; file operations may also run in parallel.
    """

    def __init__(self, work_dir: os.PathLike | str, *, batch_size: int = 500, max_delay: float = 0.2):
        #: Absolute work directory.
        self.directory = pathlib.Path(os.path.abspath(work_dir))
        #: The store inside it.
        self.path = self.directory / LAYOUT
        self._lock = OwnerLock(self.path, self.directory)
        self._files = ContentStore(self.path / "files", self.path / "tmp")
        self._record = Record(self.path / "record.sqlite", batch_size=batch_size, max_delay=max_delay)
        self._state_lock = threading.Lock()
        self._open = False
        self._forked = False
        # abspath -> (dev, ino, size, mtime_ns, hashed_ns, digest): memo entries known this session.
        self._memo: dict[str, tuple] = {}

    def __repr__(self):
        return f"<FileStore {self.path} {'closed' if self.closed else 'open'}>"

    # --- life cycle ---

    @property
    def closed(self) -> bool:
        return not self._open

    def open(self) -> "FileStore":
        """Take ownership of the work directory and open the record. Returns self."""
        with self._state_lock:
            if self._forked:
                raise StoreError(
                    f"{self.path} was opened by the parent of this forked process; open a new FileStore"
                )
            if self._open:
                return self
            try:
                self.path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the store {self.path}: {exc.strerror}") from exc
            self._lock.acquire()
            try:
                self._files.prepare()
                self._record.open()
            except OSError as exc:
                self._lock.release()
                raise StoreError(f"cannot prepare the store {self.path}: {exc}") from exc
            except BaseException:
                self._lock.release()
                raise
            self._memo.clear()
            self._open = True
            _OPEN_STORES.add(self)
        return self

    def close(self):
        """Commit buffered records and release the work directory. Idempotent."""
        with self._state_lock:
            if not self._open or self._forked:
                return
            self._open = False
            _OPEN_STORES.discard(self)
            try:
                self._record.close()
            finally:
                self._lock.release()

    def __enter__(self) -> "FileStore":
        return self.open()

    def __exit__(self, *exc_info):
        self.close()

    def _check(self):
        if not self._open:
            if self._forked:
                raise StoreError(f"{self.path} belongs to the parent of this forked process")
            raise StoreError(f"the store {self.path} is not open")

    def _abandon_in_child(self):
        """After fork(): the child must neither use nor close the parent's connection or lock."""
        if self._open:
            self._forked = True
            self._open = False
            self._lock.forget_after_fork()
            conn = self._record.abandon()
            if conn is not None:
                _FORK_ORPHANS.append(conn)
        self._state_lock = threading.Lock()

    # --- content-addressed files ---

    def add_file(self, path: os.PathLike | str, *, link: bool = True, st: typing.Optional[os.stat_result] = None) -> FileRecord:
        """Store a file's content (hard link when *link* and possible, else a copy); return its record.

        With a hard link the stored file *is* the given file; both become read-only
        so that the cached content cannot be changed by writing to the original.
        *st* is the file's ``os.stat`` result if the caller has it (saves a system call).
        """
        self._check()
        return self._files.add_file(path, link=link, st=st)

    def add_bytes(self, data: bytes) -> FileRecord:
        self._check()
        return self._files.add_bytes(data)

    def has_file(self, digest: str) -> bool:
        self._check()
        return self._files.has(digest)

    def file_path(self, digest: str) -> pathlib.Path:
        """Path of the stored content (read-only). Raises FileNotInStoreError (a StoreError and KeyError)."""
        self._check()
        return self._files.existing_path(digest)

    def restore_file(self, digest: str, dest: os.PathLike | str, *, link: bool = True):
        """Put stored content at *dest* atomically, creating parents (hard link when *link*, else a writable copy)."""
        self._check()
        self._files.restore(digest, dest, link=link)

    def verify_file(self, digest: str) -> bool:
        """Re-read stored content and check it against its digest (slow; for checks and repair)."""
        self._check()
        return self._files.verify(digest)

    # --- input digests ---

    def file_digest(self, path: os.PathLike | str) -> str:
        """sha256 hex of an input file's content (or of a directory tree), memoized.

        The memo is keyed by absolute path and (st_dev, st_ino, st_size,
        st_mtime_ns): an unchanged file is not read again, in this run or the
        next. Raises OSError (FileNotFoundError, ...) for an unreadable path.
        """
        self._check()
        abspath = os.path.abspath(path)
        st = os.stat(abspath)
        if stat.S_ISDIR(st.st_mode):
            return self._directory_digest(abspath)
        if not stat.S_ISREG(st.st_mode):
            raise StoreError(f"{abspath} is neither a regular file nor a directory")
        return self._memo_digest(abspath, st)

    def _memo_digest(self, abspath: str, st: os.stat_result) -> str:
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        memo = self._memo.get(abspath)
        if memo is None:
            memo = self._record.memo_get(abspath)
            if memo is not None:
                memo = (memo[0] % (1 << 64), memo[1] % (1 << 64), *memo[2:])
        if memo is not None and memo[:4] == key and st.st_mtime_ns + _RACY_NS <= memo[4]:
            self._memo[abspath] = memo
            return memo[5]
        hashed_ns = time.time_ns()
        digest, _, st = hash_file(abspath)
        memo = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, hashed_ns, digest)
        self._memo[abspath] = memo
        self._record.memo_put(abspath, *memo)
        return digest

    def _directory_digest(self, root: str) -> str:
        """Digest over the sorted tree: each entry's relative name and kind, and each file's digest.

        Symbolic links to files count as the file; other links count by their
        target text, so a link cycle cannot make this loop.
        """
        h = hashlib.sha256(b"scalems directory v1\0")

        def walk(directory: str, prefix: bytes):
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name)
            for entry in entries:
                rel = prefix + os.fsencode(entry.name)
                if entry.is_symlink():
                    try:
                        target = os.stat(entry.path)
                    except OSError:
                        target = None
                    if target is None or not stat.S_ISREG(target.st_mode):
                        h.update(b"l\0" + rel + b"\0" + os.fsencode(os.readlink(entry.path)) + b"\0")
                        continue
                    h.update(b"f\0" + rel + b"\0" + self._memo_digest(entry.path, target).encode() + b"\0")
                elif entry.is_dir(follow_symlinks=False):
                    h.update(b"d\0" + rel + b"\0")
                    walk(entry.path, rel + b"/")
                elif entry.is_file(follow_symlinks=False):
                    st = entry.stat(follow_symlinks=False)
                    h.update(b"f\0" + rel + b"\0" + self._memo_digest(entry.path, st).encode() + b"\0")
                else:
                    raise StoreError(f"{entry.path} (in input directory {root}) is not a regular file")

        walk(root, b"")
        return h.hexdigest()

    # --- task record ---

    def get_task(self, uid: str) -> typing.Optional[TaskRecord]:
        """The record of *uid*, including one not yet committed; None if there is none."""
        self._check()
        return self._record.get(uid)

    def get_complete(self, uid: str) -> typing.Optional[tuple]:
        """``(kind, result, files)`` if *uid* has a complete record: the result-cache lookup."""
        if not self._open:  # _check() inlined: this runs once per task added
            self._check()
        return self._record.get_complete(uid)

    def get_tasks(self, uids: typing.Iterable[str]) -> dict[str, TaskRecord]:
        """Records of many uids in a few queries; uids without a record are left out."""
        self._check()
        return self._record.get_many(uids)

    def record_task(
        self,
        uid: str,
        *,
        label: str,
        kind: str,
        state: str,
        result: typing.Optional[bytes] = None,
        files: typing.Mapping[str, FileRecord] = {},  # noqa: B006 (never mutated)
        error: typing.Optional[str] = None,
    ) -> None:
        """Record (or update) a task. Buffered: see :meth:`flush`.

        Every file named must already be stored (add_file/add_bytes) with the
        recorded size; otherwise StoreError, so that no record can claim an
        output that is not there. A ``complete`` record is final: replacing it
        with other content raises DuplicateKeyError; :meth:`forget_task` first.
        """
        self._check()
        if not isinstance(uid, str) or not uid:
            raise StoreError(f"task uid must be a non-empty string, not {uid!r}")
        for name, value in (("label", label), ("kind", kind), ("state", state)):
            if not isinstance(value, str):
                raise StoreError(f"task {uid}: {name} must be a string, not {value!r}")
        if result is not None:
            if not isinstance(result, (bytes, bytearray, memoryview)):
                raise StoreError(
                    f"task {label!r}: result must be bytes (encoded by the caller), not {type(result)}"
                )
            result = bytes(result)
        checked = {}
        for name, record in files.items():
            if not isinstance(record, FileRecord):
                raise StoreError(f"task {label!r}: file {name!r} must be a FileRecord, not {record!r}")
            if record.size == 0 and self._files.has_empty(record.digest):
                checked[str(name)] = record
                continue
            try:
                st = self._files.stat(record.digest)
            except ValueError as exc:
                raise StoreError(f"task {label!r}: file {name!r}: {exc}") from None
            if st is None or st.st_size != record.size:
                raise StoreError(
                    f"task {label!r} names output {name!r} ({record.digest}, {record.size} bytes) "
                    "that is not in the store; add it with add_file() before recording the task"
                )
            checked[str(name)] = record
        self._record.put(TaskRecord(uid, label, kind, state, result, checked, error, time.time()))

    # --- the run history (see .history) ---

    def begin_run(self) -> int:
        """The id of a new run (1 for the first run of this work directory)."""
        self._check()
        return self._record.scalar("SELECT coalesce(max(id), 0) + 1 FROM run")

    def record_run(self, row: tuple) -> None:
        """Insert or refresh a run's row (the columns of :data:`.history.RUN_UPSERT`). Buffered."""
        self._check()
        self._record.append(RUN_UPSERT, row)

    def record_attempts(self, rows: list) -> None:
        """Record finished attempts (rows of :class:`.history.AttemptInfo`'s columns). Buffered."""
        self._check()
        self._record.append(ATTEMPT_INSERT, *rows)

    def forget_task(self, uid: str) -> None:
        """Drop the record of *uid* (its files stay: other records may share them)."""
        self._check()
        self._record.forget(uid)

    def flush(self) -> None:
        """Commit buffered records now, in one transaction."""
        self._check()
        self._record.flush()

    def tasks(self) -> typing.Iterator[TaskRecord]:
        """All records (buffered ones are committed first), ordered by uid."""
        self._check()
        return self._record.iter_all()

    def count_tasks(self) -> int:
        self._check()
        return self._record.count()


def _abandon_all_in_child():
    for store in list(_OPEN_STORES):
        store._abandon_in_child()
    _OPEN_STORES.clear()


def _close_all_at_exit():
    """Commit what open stores buffered when the interpreter exits normally without close()."""
    for store in list(_OPEN_STORES):
        try:
            store.close()
        except Exception as exc:  # nothing else can report it at this point
            logger.warning("Closing %s at exit failed: %s", store.path, exc)


os.register_at_fork(after_in_child=_abandon_all_in_child)
atexit.register(_close_all_at_exit)
