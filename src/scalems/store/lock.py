"""One owner per work directory: an exclusive ``flock`` plus an ``owner.json`` note.

``flock`` is released by the kernel when the owning process dies, even on
``kill -9``, so a dead owner never blocks a new run and no PID guessing is
needed to take over. ``owner.json`` only explains *who* holds the lock (for the
refusal message) and, because a clean close removes it, whether the previous
run ended without closing.

The lock descriptor is closed in children made by ``fork()``: otherwise a
worker forked by the owner would keep the lock alive after the owner died.
"""

from __future__ import annotations

__all__ = ("OwnerLock",)

import datetime
import fcntl
import json
import logging
import os
import shlex
import socket
import sys
import time

from scalems.exceptions import StoreError, StoreLockedError

logger = logging.getLogger(__name__)

_HELD: "set[OwnerLock]" = set()


class OwnerLock:
    """The lock file ``<store>/lock`` and the note ``<store>/owner.json``."""

    def __init__(self, store_path: os.PathLike, work_dir: os.PathLike):
        self.lock_path = os.path.join(store_path, "lock")
        self.owner_path = os.path.join(store_path, "owner.json")
        self.work_dir = os.fspath(work_dir)
        self._fd: int | None = None
        #: The note left by a previous owner that did not close cleanly, if any.
        self.previous_owner: dict | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self):
        """Take the lock or raise StoreLockedError naming the live owner."""
        if self._fd is not None:
            return
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StoreError(f"cannot create the lock file {self.lock_path}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreLockedError(self.work_dir, self.describe_owner()) from None
        except OSError as exc:
            os.close(fd)
            raise StoreError(f"cannot lock {self.lock_path}: {exc.strerror}") from exc
        self._fd = fd
        _HELD.add(self)
        try:
            self._take_over_note()
        except BaseException:
            self.release()
            raise

    def _take_over_note(self):
        previous = _read_note(self.owner_path)
        if previous is not None:
            self.previous_owner = previous
            if previous.get("pid") != os.getpid() or previous.get("hostname") != socket.gethostname():
                logger.info(
                    "The previous scalems run in %s did not close cleanly (%s); taking over its work directory.",
                    self.work_dir,
                    _format_note(previous),
                )
        note = {
            "pid": os.getpid(),
            "hostname": socket.gethostname(),
            "command": shlex.join(getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv]),
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "started_epoch": time.time(),
        }
        tmp = f"{self.owner_path}.{os.getpid()}.tmp"
        with open(tmp, "w") as fh:
            json.dump(note, fh)
        os.replace(tmp, self.owner_path)

    def release(self):
        """Remove the note (a clean close) and drop the lock. Idempotent."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        _HELD.discard(self)
        try:
            os.unlink(self.owner_path)
        except FileNotFoundError:
            pass
        finally:
            os.close(fd)  # closing the only descriptor releases the flock

    def forget_after_fork(self):
        """In a forked child: drop our copy of the descriptor so the parent's lock dies with the parent."""
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass

    def describe_owner(self) -> str:
        note = _read_note(self.owner_path)
        if note is None:
            return "owner not recorded yet"
        text = _format_note(note)
        if note.get("hostname") == socket.gethostname() and isinstance(note.get("pid"), int):
            if note["pid"] == os.getpid():
                text += "; that is this process: the store is already open here"
            elif not pid_alive(note["pid"]):
                text += "; that process has exited, but a process it started still holds the lock"
        return text


def _read_note(path: str) -> dict | None:
    try:
        with open(path) as fh:
            note = json.load(fh)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"pid": None, "hostname": "?", "command": "?", "started": "? (owner.json unreadable)"}
    return note if isinstance(note, dict) else None


def _format_note(note: dict) -> str:
    command = str(note.get("command"))
    if len(command) > 200:
        command = command[:197] + "..."
    return f"pid {note.get('pid')} on host {note.get('hostname')}, command: {command}, started {note.get('started')}"


def pid_alive(pid: int) -> bool:
    """Whether process *pid* exists (one we may not signal counts as existing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _after_fork_in_child():
    for lock in list(_HELD):
        lock.forget_after_fork()
    _HELD.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)
