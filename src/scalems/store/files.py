"""Content-addressed file area of a store: ``files/<aa>/<sha256>``.

A file is stored under the sha256 of its content, so identical outputs are
kept once and a record can name a file by digest alone. The invariant that
makes the task record crash-safe lives here: a file only ever appears under
its digest name complete, because it is first written (or hard-linked) under
a private temporary name and then renamed, and a rename is atomic. A process
killed at any instant leaves at most a stray temporary file, which the next
owner removes.

Stored files are made read-only. A hard link shares the inode with the task's
own output file, so without this, a later in-place write to that output (for
example ``>>`` in a shell) would silently change the cached content.
"""

from __future__ import annotations

__all__ = ("FileRecord", "FileNotInStoreError", "ContentStore", "hash_file", "check_digest")

import errno
import hashlib
import itertools
import os
import pathlib
import re
import stat
import typing

from scalems.exceptions import StoreError

_CHUNK = 1 << 20
_DIGEST = re.compile(r"[0-9a-f]{64}\Z")
_WRITE_BITS = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
# Attempts at hashing a file that keeps changing under us before giving up.
_ATTEMPTS = 3


class FileRecord(typing.NamedTuple):
    """Stored content: its sha256 hex digest and size in bytes."""

    digest: str
    size: int


class FileNotInStoreError(StoreError, KeyError):
    """No content with this digest is stored (a KeyError too, for mapping-style callers)."""

    def __str__(self):  # KeyError would otherwise show the repr of the message.
        return str(self.args[0]) if self.args else ""


def check_digest(digest: str) -> str:
    """Return *digest* if it is a lowercase sha256 hex string; it becomes a path, so be strict."""
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise ValueError(f"not a sha256 hex digest: {digest!r}")
    return digest


def _stat_key(st: os.stat_result) -> tuple:
    """What must not change while a file is read, for the read to be one consistent version."""
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _hash_fd(fh: typing.BinaryIO, sink: typing.Optional[typing.BinaryIO] = None) -> tuple[str, int]:
    """sha256 and size of the rest of *fh*, copying to *sink* on the way (one pass for copies)."""
    h = hashlib.sha256()
    size = 0
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    while True:
        n = fh.readinto(buf)
        if not n:
            break
        chunk = view[:n]
        h.update(chunk)
        if sink is not None:
            sink.write(chunk)
        size += n
    return h.hexdigest(), size


def hash_file(path: os.PathLike | str) -> tuple[str, int, os.stat_result]:
    """sha256, size and stat of one consistent version of a regular file.

    The file is fstat-ed before and after reading; if it changed meanwhile it
    is read again, so a digest never mixes two versions.
    """
    for _ in range(_ATTEMPTS):
        with open(path, "rb", buffering=0) as fh:
            before = os.fstat(fh.fileno())
            if not stat.S_ISREG(before.st_mode):
                raise StoreError(f"{os.fspath(path)} is not a regular file")
            digest, size = _hash_fd(fh)
            after = os.fstat(fh.fileno())
        if _stat_key(before) == _stat_key(after) and size == after.st_size:
            return digest, size, after
    raise StoreError(
        f"{os.fspath(path)} kept changing while it was being read; is a process still writing it?"
    )


_EMPTY_DIGEST = hashlib.sha256(b"").hexdigest()


class ContentStore:
    """The ``files/`` area. Holds no locks: every step is a rename, so threads may add in parallel."""

    def __init__(self, root: pathlib.Path, tmp: pathlib.Path):
        self.root = root
        self.tmp = tmp
        self._root = os.fspath(root)  # str paths: record_task stats every named file, keep it cheap
        self._counter = itertools.count()
        self._subdirs: set[str] = set()

    def prepare(self):
        """Create the area and drop temporaries left by a killed owner (only the owner calls this)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)
        for entry in os.scandir(self.tmp):
            try:
                if entry.is_dir(follow_symlinks=False):
                    import shutil

                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    os.unlink(entry.path)
            except FileNotFoundError:
                pass

    # --- lookup ---

    def path(self, digest: str) -> pathlib.Path:
        check_digest(digest)
        return self.root / digest[:2] / digest

    def stat(self, digest: str) -> typing.Optional[os.stat_result]:
        check_digest(digest)
        try:
            return os.stat(f"{self._root}/{digest[:2]}/{digest}")
        except FileNotFoundError:
            return None

    def has(self, digest: str) -> bool:
        return self.stat(digest) is not None

    def existing_path(self, digest: str) -> pathlib.Path:
        path = self.path(digest)
        if not path.exists():
            raise FileNotInStoreError(f"no file with digest {digest} in {self.root}")
        return path

    def verify(self, digest: str) -> bool:
        """Re-read the stored file and check that it still hashes to its name."""
        try:
            return hash_file(self.existing_path(digest))[0] == digest
        except FileNotInStoreError:
            return False

    # --- adding ---

    _have_empty = False

    def _tmp_name(self) -> str:
        return os.path.join(self.tmp, f"{os.getpid()}.{next(self._counter)}.{os.urandom(4).hex()}")

    def has_empty(self, digest: str) -> bool:
        """True if *digest* is the empty content and this store holds it (no system call)."""
        return self._have_empty and digest == _EMPTY_DIGEST

    def add_file(self, path: os.PathLike | str, *, link: bool = True, st: typing.Optional[os.stat_result] = None) -> FileRecord:
        """Store a regular file's content: hard-link it when *link* and possible, else copy."""
        src = os.fspath(path)
        if st is None:
            try:
                st = os.stat(src)
            except OSError as exc:
                raise StoreError(f"cannot store {src}: {exc.strerror}") from exc
        if not stat.S_ISREG(st.st_mode):
            raise StoreError(f"cannot store {src}: not a regular file")
        if st.st_size == 0:
            # Empty outputs (often stderr) are common: store the one empty object, leave the file alone.
            if not self._have_empty:
                self.add_bytes(b"")
                self._have_empty = True
            return FileRecord(_EMPTY_DIGEST, 0)
        try:
            if link:
                record = self._add_by_link(src)
                if record is not None:
                    return record
            return self._add_by_copy(src)
        except OSError as exc:
            raise StoreError(f"cannot store {src}: {exc}") from exc

    def _add_by_link(self, src: str) -> typing.Optional[FileRecord]:
        """Link under a temporary name, then hash the link: what is hashed is what gets stored."""
        tmp = self._tmp_name()
        try:
            os.link(src, tmp)
        except OSError:
            # Cross-device, no hard links on this filesystem, protected_hardlinks, ...: copy instead.
            return None
        try:
            digest, size, st = hash_file(tmp)
            self._publish(tmp, digest, st.st_mode)
        finally:
            _unlink_quietly(tmp)
        return FileRecord(digest, size)

    def _add_by_copy(self, src: str) -> FileRecord:
        for _ in range(_ATTEMPTS):
            tmp = self._tmp_name()
            try:
                with open(src, "rb", buffering=0) as fin:
                    before = os.fstat(fin.fileno())
                    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
                    with open(fd, "wb", buffering=0) as fout:
                        digest, size = _hash_fd(fin, fout)
                    after = os.fstat(fin.fileno())
                if _stat_key(before) == _stat_key(after) and size == after.st_size:
                    self._publish(tmp, digest, before.st_mode)
                    return FileRecord(digest, size)
            finally:
                _unlink_quietly(tmp)
        raise StoreError(f"{src} kept changing while it was being stored; is a process still writing it?")

    def add_bytes(self, data: bytes) -> FileRecord:
        data = bytes(data)
        digest = hashlib.sha256(data).hexdigest()
        if not self.has(digest):
            tmp = self._tmp_name()
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
                with open(fd, "wb", buffering=0) as fout:
                    view = memoryview(data)
                    while view:
                        view = view[fout.write(view) :]
                self._publish(tmp, digest, 0)
            except OSError as exc:
                raise StoreError(f"cannot write to {self.root}: {exc}") from exc
            finally:
                _unlink_quietly(tmp)
        return FileRecord(digest, len(data))

    def _publish(self, tmp: str, digest: str, source_mode: int):
        """Rename a complete temporary file to its digest name (the commit point of a file)."""
        dest = self.path(digest)
        if dest.exists():
            return  # Same content already stored; the caller removes tmp. Leaves the source's mode alone.
        mode = os.stat(tmp).st_mode
        new_mode = stat.S_IMODE(mode) & ~_WRITE_BITS
        if source_mode & stat.S_IXUSR:
            new_mode |= (new_mode & 0o444) >> 2  # keep outputs that are programs executable
        try:
            os.chmod(tmp, new_mode)
        except OSError:
            pass  # Not our inode to change (e.g. linked from a file of another owner): still store it.
        sub = digest[:2]
        if sub not in self._subdirs:
            (self.root / sub).mkdir(exist_ok=True)
            self._subdirs.add(sub)
        try:
            os.rename(tmp, dest)
        except FileNotFoundError:  # the subdirectory was removed behind our back
            (self.root / sub).mkdir(exist_ok=True)
            os.rename(tmp, dest)

    # --- getting content out ---

    def restore(self, digest: str, dest: os.PathLike | str, *, link: bool = True):
        """Put the stored content at *dest*, atomically: a reader sees the old file or the whole new one."""
        source = self.existing_path(digest)
        dest = os.path.abspath(dest)
        parent = os.path.dirname(dest)
        try:
            os.makedirs(parent, exist_ok=True)
            try:
                if os.path.samefile(source, dest):
                    return
            except FileNotFoundError:
                pass
            tmp = os.path.join(parent, f".{os.path.basename(dest)}.scalems-{os.urandom(4).hex()}")
            try:
                linked = False
                if link:
                    try:
                        os.link(source, tmp)
                        linked = True
                    except OSError as exc:
                        if exc.errno == errno.ENOENT:
                            raise
                if not linked:
                    # A private copy may be written to without touching the store: make it writable.
                    import shutil  # only when hard links are impossible

                    shutil.copyfile(source, tmp)
                    if os.stat(source).st_mode & stat.S_IXUSR:
                        mode = stat.S_IMODE(os.stat(tmp).st_mode)
                        os.chmod(tmp, mode | (mode & 0o444) >> 2)
                os.replace(tmp, dest)
            finally:
                _unlink_quietly(tmp)
        except OSError as exc:
            raise StoreError(f"cannot restore {digest} to {dest}: {exc}") from exc


def _unlink_quietly(path: str):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
