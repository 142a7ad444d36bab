"""Tests of scalems.store: content-addressed files, the task record, the owner lock.

Processes that must own a store at the same time as the test are real
subprocesses; they report progress on stdout and wait on stdin, so events are
ordered through pipes, never by sleeping.
"""

import hashlib
import logging
import os
import random
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from scalems.exceptions import DuplicateKeyError, StoreError, StoreLockedError
from scalems.store import COMPLETE, LAYOUT, SCHEMA_VERSION, FileNotInStoreError, FileRecord, FileStore
from scalems.store import filestore as filestore_module

TIMEOUT = 60  # seconds, for every subprocess interaction


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def store(tmp_path):
    with FileStore(tmp_path / "work") as s:
        yield s


def committed_uids(store: FileStore) -> set:
    """uids committed to the database, seen through a separate connection (not the buffer)."""
    with sqlite3.connect(store.path / "record.sqlite") as conn:
        return {row[0] for row in conn.execute("SELECT uid FROM task")}


class Child:
    """A Python subprocess running *code*; talks through line-based pipes with timeouts."""

    def __init__(self, code: str, *args):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._lines = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._cond = threading.Condition()
        self._eof = False
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            with self._cond:
                self._lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def readline(self, timeout=TIMEOUT) -> str:
        with self._cond:
            if not self._cond.wait_for(lambda: self._lines or self._eof, timeout=timeout):
                self.kill()
                raise AssertionError("child did not answer in time")
            if not self._lines:
                self.proc.wait(timeout=TIMEOUT)
                raise AssertionError(f"child exited ({self.proc.returncode}): {self.proc.stderr.read()}")
            return self._lines.pop(0)

    def send(self, text="\n"):
        self.proc.stdin.write(text)
        self.proc.stdin.flush()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=TIMEOUT)
        self._reader.join(timeout=TIMEOUT)
        self.proc.stdin.close()
        self.proc.stderr.close()

    def finish(self) -> int:
        self.proc.stdin.close()
        code = self.proc.wait(timeout=TIMEOUT)
        self._reader.join(timeout=TIMEOUT)
        self.proc.stderr.close()
        return code


# A process that opens the store, records one task, says "ready", and closes when stdin says so.
OWNER = """
    import sys
    from scalems.store import FileStore
    store = FileStore(sys.argv[1]).open()
    f = store.add_bytes(b"owned")
    store.record_task("owner-task", label="owner", kind="executable", state="complete", files={"stdout": f})
    store.flush()
    print("ready", flush=True)
    sys.stdin.readline()
    store.close()
    print("closed", flush=True)
"""


# --- life cycle ---


def test_layout_and_life_cycle(tmp_path):
    work = tmp_path / "work"
    s = FileStore(work)
    assert s.closed and s.directory == work and s.directory.is_absolute()
    assert s.path == work / LAYOUT
    with pytest.raises(StoreError, match="not open"):
        s.get_task("x")
    assert s.open() is s and not s.closed
    assert s.open() is s  # already open: no-op
    assert (s.path / "lock").exists() and (s.path / "owner.json").exists()
    with sqlite3.connect(s.path / "record.sqlite") as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    s.close()
    s.close()  # idempotent
    assert s.closed and not (s.path / "owner.json").exists()
    for call in (
        lambda: s.add_bytes(b"x"),
        lambda: s.has_file("0" * 64),
        lambda: s.record_task("u", label="l", kind="k", state="s"),
        lambda: s.flush(),
        lambda: list(s.tasks()),
        lambda: s.file_digest(tmp_path),
    ):
        with pytest.raises(StoreError):
            call()
    with s:  # reopen
        assert not s.closed
    assert s.closed


def test_relative_work_dir_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with FileStore("rel") as s:
        assert s.directory == tmp_path / "rel"


def test_newer_layout_is_refused_and_lock_released(tmp_path):
    work = tmp_path / "work"
    FileStore(work).open().close()
    with sqlite3.connect(work / LAYOUT / "record.sqlite") as conn:
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="newer scalems"):
        FileStore(work).open()
    with sqlite3.connect(work / LAYOUT / "record.sqlite") as conn:
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    FileStore(work).open().close()  # the failed open did not keep the lock


def test_damaged_record_is_reported(tmp_path):
    work = tmp_path / "work"
    (work / LAYOUT).mkdir(parents=True)
    (work / LAYOUT / "record.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="damaged"):
        FileStore(work).open()


# --- content-addressed files ---


def test_add_bytes_and_file_path(store):
    rec = store.add_bytes(b"hello")
    assert rec == FileRecord(sha256(b"hello"), 5)
    assert store.has_file(rec.digest)
    path = store.file_path(rec.digest)
    assert path == store.path / "files" / rec.digest[:2] / rec.digest
    assert path.read_bytes() == b"hello"
    assert not path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    assert store.add_bytes(b"hello") == rec
    assert store.add_bytes(b"") == FileRecord(sha256(b""), 0)


def test_missing_digest(store):
    missing = "0" * 64
    assert not store.has_file(missing)
    with pytest.raises(FileNotInStoreError) as info:
        store.file_path(missing)
    assert isinstance(info.value, StoreError) and isinstance(info.value, KeyError)
    assert missing in str(info.value)
    with pytest.raises(FileNotInStoreError):
        store.restore_file(missing, store.directory / "x")
    with pytest.raises(ValueError):
        store.has_file("../../etc/passwd")


def test_add_file_identical_content_is_stored_once(store, tmp_path):
    a, b = tmp_path / "a.dat", tmp_path / "b.dat"
    a.write_bytes(b"same content\n" * 1000)
    b.write_bytes(b"same content\n" * 1000)
    ra = store.add_file(a)
    rb = store.add_file(b)
    assert ra == rb == FileRecord(sha256(a.read_bytes()), 13000)
    stored = [p for p in (store.path / "files").rglob("*") if p.is_file()]
    assert stored == [store.file_path(ra.digest)]
    # The first was hard-linked, so it is protected from in-place writes; the duplicate was left alone.
    assert os.path.samefile(a, stored[0])
    assert not a.stat().st_mode & stat.S_IWUSR
    assert b.stat().st_mode & stat.S_IWUSR
    assert list((store.path / "tmp").iterdir()) == []


def test_add_file_copies_when_link_fails(store, tmp_path, monkeypatch):
    src = tmp_path / "out.dat"
    src.write_bytes(b"cross-device")
    mode = src.stat().st_mode

    def no_link(*args, **kwargs):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_link)
    rec = store.add_file(src)
    monkeypatch.undo()
    assert store.file_path(rec.digest).read_bytes() == b"cross-device"
    assert not os.path.samefile(src, store.file_path(rec.digest))
    assert src.stat().st_mode == mode
    other = tmp_path / "other.dat"
    other.write_bytes(b"copied on request")
    rec2 = store.add_file(other, link=False)
    assert not os.path.samefile(other, store.file_path(rec2.digest))


def test_add_file_keeps_programs_executable(store, tmp_path):
    prog = tmp_path / "prog.sh"
    prog.write_text("#!/bin/sh\necho hi\n")
    prog.chmod(0o755)
    rec = store.add_file(prog, link=False)
    assert os.access(store.file_path(rec.digest), os.X_OK)
    dest = tmp_path / "copy" / "prog.sh"
    store.restore_file(rec.digest, dest, link=False)
    assert os.access(dest, os.X_OK) and os.access(dest, os.W_OK)


def test_add_file_rejects_non_files(store, tmp_path):
    with pytest.raises(StoreError, match="not a regular file"):
        store.add_file(tmp_path)
    with pytest.raises(StoreError, match="missing"):
        store.add_file(tmp_path / "missing")


def test_restore_file(store, tmp_path):
    rec = store.add_bytes(b"trajectory frames")
    dest = tmp_path / "task" / "deep" / "traj.xtc"
    store.restore_file(rec.digest, dest)  # creates parents
    assert dest.read_bytes() == b"trajectory frames"
    assert os.path.samefile(dest, store.file_path(rec.digest))
    store.restore_file(rec.digest, dest)  # already there: fine
    # Replacing an existing file, as a writable copy that does not alias the store.
    other = tmp_path / "other.txt"
    other.write_text("old")
    store.restore_file(rec.digest, other, link=False)
    assert other.read_bytes() == b"trajectory frames"
    other.write_text("changed")  # writable, and the stored content is untouched
    assert store.file_path(rec.digest).read_bytes() == b"trajectory frames"
    assert store.verify_file(rec.digest)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_restore_file_onto_directory_is_an_error(store, tmp_path):
    rec = store.add_bytes(b"x")
    (tmp_path / "adir").mkdir()
    with pytest.raises(StoreError, match="adir"):
        store.restore_file(rec.digest, tmp_path / "adir")


# --- input digests ---


@pytest.fixture
def hash_calls(monkeypatch):
    """Count how often file_digest really reads a file."""
    calls = []
    real = filestore_module.hash_file

    def counting(path):
        calls.append(os.fspath(path))
        return real(path)

    monkeypatch.setattr(filestore_module, "hash_file", counting)
    return calls


def set_old_mtime(path, ns):
    os.utime(path, ns=(ns, ns))


OLD = time.time_ns() - 3600 * 10**9  # well outside the racy window


def test_file_digest_memo(store, tmp_path, hash_calls):
    f = tmp_path / "md.mdp"
    f.write_bytes(b"nsteps = 1000\n")
    set_old_mtime(f, OLD)
    d1 = store.file_digest(f)
    assert d1 == sha256(b"nsteps = 1000\n")
    assert store.file_digest(f) == d1 and store.file_digest(str(f)) == d1
    assert len(hash_calls) == 1  # memoized

    # Same size, new content, new mtime: read again.
    f.write_bytes(b"nsteps = 2000\n")
    set_old_mtime(f, OLD + 10**9)
    d2 = store.file_digest(f)
    assert d2 == sha256(b"nsteps = 2000\n") and len(hash_calls) == 2

    # Replaced by another file of the same size and mtime: the inode differs, read again.
    g = tmp_path / "new.mdp"
    g.write_bytes(b"nsteps = 3000\n")
    set_old_mtime(g, OLD + 10**9)
    os.replace(g, f)
    assert store.file_digest(f) == sha256(b"nsteps = 3000\n") and len(hash_calls) == 3
    assert store.file_digest(f) == sha256(b"nsteps = 3000\n") and len(hash_calls) == 3


def test_file_digest_memo_persists(tmp_path, hash_calls):
    f = tmp_path / "conf.gro"
    f.write_bytes(b"atoms")
    set_old_mtime(f, OLD)
    with FileStore(tmp_path / "work") as s:
        digest = s.file_digest(f)
    with FileStore(tmp_path / "work") as s:
        assert s.file_digest(f) == digest
    assert len(hash_calls) == 1


def test_file_digest_rereads_racy_files(store, tmp_path, hash_calls):
    """A file modified just now could change again within one mtime tick: do not trust its memo yet."""
    f = tmp_path / "fresh.txt"
    f.write_bytes(b"new")
    assert store.file_digest(f) == sha256(b"new")
    assert store.file_digest(f) == sha256(b"new")
    assert len(hash_calls) == 2


def test_file_digest_missing_file(store, tmp_path):
    with pytest.raises(FileNotFoundError):
        store.file_digest(tmp_path / "nope")


def test_directory_digest(store, tmp_path):
    def tree(root):
        (root / "sub").mkdir(parents=True)
        (root / "a.txt").write_text("a")
        (root / "sub" / "b.txt").write_text("b")
        return root

    one, two = tree(tmp_path / "one"), tree(tmp_path / "two")
    d = store.file_digest(one)
    assert d == store.file_digest(two)  # content and names count, not location
    assert d != store.file_digest(one / "a.txt")
    (two / "sub" / "b.txt").write_text("B")
    assert store.file_digest(two) != d
    (two / "sub" / "b.txt").write_text("b")
    assert store.file_digest(two) == d
    (two / "sub" / "b.txt").rename(two / "sub" / "c.txt")
    assert store.file_digest(two) != d
    (two / "sub" / "c.txt").rename(two / "sub" / "b.txt")
    (two / "empty").mkdir()
    assert store.file_digest(two) != d
    (two / "empty").rmdir()
    (two / "loop").symlink_to(two)  # a link cycle must not hang the walk
    assert store.file_digest(two) != d


# --- task record ---


def test_record_and_reopen(tmp_path):
    work = tmp_path / "work"
    with FileStore(work) as s:
        out = s.add_bytes(b"42\n")
        s.record_task(
            "uid-1", label="add", kind="function", state=COMPLETE, result=b"\x80pickle", files={"out": out}
        )
        s.record_task("uid-2", label="gmx", kind="executable", state="failed", error="exit status 1")
        first = s.get_task("uid-1")
        assert first.files == {"out": out} and first.result == b"\x80pickle" and first.state == COMPLETE
        assert s.get_task("nope") is None
    with FileStore(work) as s:
        assert s.get_task("uid-1") == first
        failed = s.get_task("uid-2")
        assert (failed.state, failed.error, failed.result, failed.files) == (
            "failed",
            "exit status 1",
            None,
            {},
        )
        assert [t.uid for t in s.tasks()] == ["uid-1", "uid-2"]
        assert s.count_tasks() == 2


def test_result_cache_lookup(tmp_path):
    """get_complete: only complete records; bulk read-ahead never hands out a stale or large row wrongly."""
    from scalems.store.record import PRELOAD_RESULT_MAX

    work = tmp_path / "work"
    big = b"x" * (PRELOAD_RESULT_MAX + 1)
    with FileStore(work) as s:
        out = s.add_bytes(b"42\n")
        s.record_task("small", label="a", kind="function", state=COMPLETE, result=b"r1")
        s.record_task("big", label="b", kind="function", state=COMPLETE, result=big)
        s.record_task("exe", label="c", kind="executable", state=COMPLETE, result=b"{}", files={"out": out})
        s.record_task("failed", label="d", kind="function", state="failed", error="boom")
        assert s.get_complete("small") == ("function", b"r1", {})  # from the write buffer
    with FileStore(work) as s:
        assert s.get_complete("small") == ("function", b"r1", {})
        assert s.get_complete("small") == ("function", b"r1", {})  # asked twice: from the database
        assert s.get_complete("big") == ("function", big, {})
        assert s.get_complete("exe") == ("executable", b"{}", {"out": out})
        assert s.get_complete("failed") is None and s.get_complete("nope") is None
    with FileStore(work) as s:
        assert s.get_complete("nope") is None  # reads ahead
        s.forget_task("exe")
        s.flush()
        assert s.get_complete("exe") is None  # the read-ahead copy went with the record
        s.record_task("failed", label="d", kind="function", state=COMPLETE, result=b"r2")
        s.flush()
        assert s.get_complete("failed") == ("function", b"r2", {})
        # "small" was read ahead above and never handed out; a newer result must win over that copy,
        # both while it is buffered and once it is committed.
        s.forget_task("small")
        s.record_task("small", label="a", kind="function", state=COMPLETE, result=b"r3")
        assert s.get_complete("small") == ("function", b"r3", {})
        s.flush()
        assert s.get_complete("small") == ("function", b"r3", {})


def test_state_updates_and_forget(store):
    store.record_task("u", label="t", kind="executable", state="running")
    store.record_task("u", label="t", kind="executable", state="failed", error="boom")
    assert store.get_task("u").state == "failed"
    store.flush()
    store.record_task("u", label="t", kind="executable", state=COMPLETE, result=b"r")
    assert store.get_task("u").state == COMPLETE
    store.forget_task("u")
    assert store.get_task("u") is None
    store.flush()
    assert store.get_task("u") is None and "u" not in committed_uids(store)


def test_complete_record_is_final(store):
    store.record_task("u", label="first", kind="function", state=COMPLETE, result=b"1")
    before = store.get_task("u")
    # The same work recorded again (e.g. a duplicate ensemble member): accepted, record unchanged.
    store.record_task("u", label="second", kind="function", state=COMPLETE, result=b"1")
    assert store.get_task("u") == before
    with pytest.raises(DuplicateKeyError, match="first"):
        store.record_task("u", label="second", kind="function", state=COMPLETE, result=b"2")
    store.flush()
    with pytest.raises(DuplicateKeyError):
        store.record_task("u", label="second", kind="function", state="running")
    store.forget_task("u")  # the way to redo it (--no-cache)
    store.record_task("u", label="second", kind="function", state=COMPLETE, result=b"2")
    assert store.get_task("u").result == b"2"


def test_record_refuses_files_not_in_store(store):
    with pytest.raises(StoreError, match="not in the store"):
        store.record_task("u", label="t", kind="k", state=COMPLETE, files={"out": FileRecord("a" * 64, 1)})
    rec = store.add_bytes(b"abc")
    with pytest.raises(StoreError, match="not in the store"):
        store.record_task("u", label="t", kind="k", state=COMPLETE, files={"out": FileRecord(rec.digest, 4)})
    with pytest.raises(StoreError):
        store.record_task("u", label="t", kind="k", state=COMPLETE, files={"out": ("x", 1)})
    with pytest.raises(StoreError):
        store.record_task("u", label="t", kind="k", state=COMPLETE, result="not bytes")
    assert store.get_task("u") is None


def test_get_tasks_bulk(store):
    for i in range(2000):
        store.record_task(f"u{i}", label=f"t{i}", kind="k", state=COMPLETE, result=str(i).encode())
    store.flush()
    store.record_task("buffered", label="b", kind="k", state="running")
    store.forget_task("u7")
    found = store.get_tasks([f"u{i}" for i in range(2000)] + ["buffered", "missing"])
    assert len(found) == 2000
    assert "u7" not in found and "missing" not in found
    assert found["u1999"].result == b"1999" and found["buffered"].state == "running"


def test_batching(tmp_path):
    with FileStore(tmp_path / "work", batch_size=10, max_delay=3600) as s:
        for i in range(9):
            s.record_task(f"u{i}", label="t", kind="k", state=COMPLETE)
        assert s.get_task("u3").state == COMPLETE  # visible while buffered
        assert committed_uids(s) == set()  # not committed per task
        s.record_task("u9", label="t", kind="k", state=COMPLETE)  # the 10th fills the batch
        assert committed_uids(s) == {f"u{i}" for i in range(10)}
        s.record_task("late", label="t", kind="k", state="running")
        assert "late" not in committed_uids(s)
        s.flush()
        assert "late" in committed_uids(s)
        s.record_task("at-close", label="t", kind="k", state=COMPLETE)
    with FileStore(tmp_path / "work") as s:
        assert s.get_task("at-close").state == COMPLETE


def test_buffer_is_committed_after_max_delay_without_further_calls(tmp_path):
    """The completion of a long task must not wait for the next completion to be committed."""
    with FileStore(tmp_path / "work", batch_size=1000, max_delay=0.05) as s:
        s.record_task("lonely", label="t", kind="k", state=COMPLETE)
        deadline = time.monotonic() + TIMEOUT
        while "lonely" not in committed_uids(s):  # waits for a timer, not for another event
            assert time.monotonic() < deadline, "the buffer was never committed"
            time.sleep(0.01)


def test_calls_from_several_threads(store):
    def work(n):
        for i in range(50):
            store.record_task(f"t{n}-{i}", label="t", kind="k", state=COMPLETE)
            assert store.get_task(f"t{n}-{i}") is not None

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=TIMEOUT)
    store.flush()
    assert store.count_tasks() == 200


# --- one owner ---


@pytest.mark.usefixtures("no_leaked_processes")
def test_second_process_is_refused_naming_the_owner(tmp_path, caplog):
    work = tmp_path / "work"
    owner = Child(OWNER, work)
    try:
        assert owner.readline() == "ready"
        with pytest.raises(StoreLockedError) as info:
            FileStore(work).open()
        err = info.value
        assert f"pid {owner.proc.pid}" in err.owner and socket.gethostname() in err.owner
        assert "-c" in err.owner  # the command line
        assert str(work) in str(err) and str(owner.proc.pid) in str(err)
        owner.send()
        assert owner.readline() == "closed"
        assert owner.finish() == 0
    finally:
        owner.kill()
    with caplog.at_level(logging.INFO, logger="scalems.store"):
        with FileStore(work) as s:
            assert s.get_task("owner-task").state == COMPLETE
    assert "did not close cleanly" not in caplog.text  # it did


def test_same_process_second_store_is_refused(tmp_path):
    with FileStore(tmp_path / "work"):
        with pytest.raises(StoreLockedError, match="this process"):
            FileStore(tmp_path / "work").open()


@pytest.mark.usefixtures("no_leaked_processes")
def test_dead_owner_is_taken_over(tmp_path, caplog):
    work = tmp_path / "work"
    owner = Child(OWNER, work)
    try:
        assert owner.readline() == "ready"
        pid = owner.proc.pid
    finally:
        owner.kill()
    assert owner.proc.returncode == -signal.SIGKILL
    with caplog.at_level(logging.INFO, logger="scalems.store"):
        with FileStore(work) as s:
            rec = s.get_task("owner-task")
            assert rec.state == COMPLETE and s.has_file(rec.files["stdout"].digest)
    assert "did not close cleanly" in caplog.text and f"pid {pid}" in caplog.text


FORKING_OWNER = """
    import os, sys, time
    from scalems.store import FileStore
    store = FileStore(sys.argv[1]).open()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            store.get_task("x")
            os.write(w, b"usable\\n")
        except Exception as exc:
            os.write(w, type(exc).__name__.encode() + b"\\n")
        os.close(w)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):  # let the test see the owner's pipes close when the owner dies
            os.dup2(null, fd)
        time.sleep(120)  # stays alive until the test kills it (bounded, in case the test cannot)
        os._exit(0)
    os.close(w)
    child_says = os.read(r, 100).decode().strip()
    print("ready", pid, child_says, flush=True)
    sys.stdin.readline()
"""


@pytest.mark.usefixtures("no_leaked_processes")
def test_forked_child_does_not_keep_the_lock(tmp_path):
    """A worker forked by the owner must not keep the work directory locked after the owner dies."""
    work = tmp_path / "work"
    owner = Child(FORKING_OWNER, work)
    grandchild = None
    try:
        _, grandchild, child_says = owner.readline().split()
        grandchild = int(grandchild)
        assert child_says == "StoreError"  # the child cannot use the parent's store either
        owner.kill()
        with FileStore(work) as s:  # the fork is alive, yet the store is free
            assert s.get_task("x") is None
            os.kill(grandchild, 0)  # raises if it is gone
    finally:
        owner.kill()
        if grandchild is not None:
            try:
                os.kill(grandchild, signal.SIGKILL)
            except ProcessLookupError:
                pass


# --- crash consistency ---

RECORDER = """
    import os, random, sys
    from scalems.store import FileStore
    work, start, link, seed = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", int(sys.argv[4])
    rng = random.Random(seed)
    store = FileStore(work, batch_size=rng.choice([1, 7, 500]), max_delay=rng.choice([0.0, 0.05])).open()
    scratch = os.path.join(work, "scratch", str(os.getpid()))
    os.makedirs(scratch)
    print("ready", flush=True)
    i = start
    while True:
        uid = f"task-{i:06d}"
        data = rng.randbytes(rng.choice([0, 1, 100, 4096, 65536, 1 << 20, 3 << 20]))
        out = os.path.join(scratch, f"out-{i}")
        with open(out, "wb") as fh:
            fh.write(data)
        f_out = store.add_file(out, link=link)
        f_log = store.add_bytes(b"log of %d: " % i + data[:100])
        store.record_task(uid, label=f"member[{i}]", kind="executable", state="running")
        store.record_task(uid, label=f"member[{i}]", kind="executable", state="complete",
                          result=b"%d" % i, files={"out": f_out, "log": f_log})
        if i % 5 == 0:
            store.flush()
            print("flushed", i, flush=True)
        else:
            print("recorded", i, flush=True)
        i += 1
"""


def check_store_consistent(store: FileStore) -> int:
    """Every complete record's files are stored whole; every stored file matches its name."""
    complete = 0
    for rec in store.tasks():
        if rec.state != COMPLETE:
            continue
        complete += 1
        assert set(rec.files) == {"out", "log"}
        for name, f in rec.files.items():
            data = store.file_path(f.digest).read_bytes()
            assert len(data) == f.size, (rec.uid, name)
            assert sha256(data) == f.digest, (rec.uid, name)
    for path in (store.path / "files").rglob("*"):
        if path.is_file():
            assert sha256(path.read_bytes()) == path.name, f"partial content under a digest name: {path}"
    assert list((store.path / "tmp").iterdir()) == []
    return complete


@pytest.mark.usefixtures("no_leaked_processes")
def test_sigkill_at_random_moments_leaves_a_consistent_store(tmp_path):
    work = tmp_path / "work"
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    start = 0
    flushed = set()
    total_complete = 0
    for iteration in range(12):
        child = Child(RECORDER, work, start, iteration % 2, rng.randrange(1 << 30))
        try:
            assert child.readline() == "ready"
            for _ in range(rng.randrange(1, 30)):
                kind, i = child.readline().split()
                if kind == "flushed":
                    flushed.update(f"task-{j:06d}" for j in range(start, int(i) + 1))
        finally:
            child.kill()  # lands at whatever the child is doing now
        assert child.proc.returncode == -signal.SIGKILL, f"seed {seed}"
        with FileStore(work) as s:
            total_complete = check_store_consistent(s)
            records = s.get_tasks(sorted(flushed))
            assert set(records) == flushed, f"seed {seed}: flushed records lost"
            assert all(r.state == COMPLETE for r in records.values())
            start = 1 + max((int(t.uid.split("-")[1]) for t in s.tasks()), default=start)
            start += 1000  # never reuse a uid that was in an unflushed buffer
    assert total_complete > 0
