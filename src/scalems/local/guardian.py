"""No orphans: the programs a run started end with it, however the run ends.

A run stops its tasks itself on every exit it controls (end of the script,
Ctrl-C, SIGTERM). For the exits it does not control (``kill -9``, a crash,
the terminal closing), a small guardian process watches the run: it holds the
read end of a pipe whose only write end the run holds, so it reads end of
file the moment the run is gone, for whatever reason. It then ends every
process group still recorded as running (SIGTERM, a grace period, SIGKILL).

Each task's program and each warm worker runs in a process group of its own
(MPI ranks and whatever a function starts are in it too), recorded as a file
``<pgid>`` in the run's own folder (``running/<run pid>/``) while it runs. The guardian is a
``/bin/sh`` loop, not a Python process, so it costs a run about a millisecond.
A later run that finds records of processes still alive (the guardian was
killed too) ends them before it starts anything, so a task never runs twice
at once in one work directory.
"""

from __future__ import annotations

__all__ = ("Guardian", "end_leftovers")

import logging
import os
import signal
import subprocess
import time
import typing

logger = logging.getLogger(__name__)

# Read one line: "q" is a clean stop. End of file means the run is gone: end what is recorded.
_SCRIPT = r"""
if read line; then exit 0; fi
cd "$1" || exit 0
for f in *; do [ -f "$f" ] && kill -TERM "-$f" 2>/dev/null; done
sleep "$2"
for f in *; do [ -f "$f" ] && kill -KILL "-$f" 2>/dev/null; rm -f "$f"; done
cd / && rmdir "$1"
"""


def _start_time(pid: int) -> typing.Optional[str]:
    """The kernel's start time of *pid* (distinguishes it from a later process with a reused pid)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return None


class Guardian:
    """The guardian of one run; :meth:`register` each process group while it runs.

    *root* holds one folder per run, so a late guardian of a dead run never touches
    the records of the next one.
    """

    def __init__(self, root: os.PathLike, grace: float = 5.0):
        self.folder = os.path.join(os.fspath(root), str(os.getpid()))
        os.makedirs(self.folder, exist_ok=True)
        read_end, self._write_end = os.pipe()
        try:
            self._process = subprocess.Popen(
                ["/bin/sh", "-c", _SCRIPT, "scalems-guardian", self.folder, str(grace)],
                stdin=read_end,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C in the terminal is the run's to handle, not the guardian's
            )
        finally:
            os.close(read_end)

    def register(self, pgid: int) -> None:
        """Record a running process group (its leader's pid)."""
        fd = os.open(os.path.join(self.folder, str(pgid)), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, (_start_time(pgid) or "").encode())
        finally:
            os.close(fd)

    def unregister(self, pgid: int) -> None:
        try:
            os.unlink(os.path.join(self.folder, str(pgid)))
        except FileNotFoundError:
            pass

    def close(self) -> None:
        """The run ends cleanly (its processes are stopped): let the guardian go without ending anything."""
        if self._write_end < 0:
            return
        try:
            os.write(self._write_end, b"q\n")
        except OSError:
            pass
        os.close(self._write_end)
        self._write_end = -1
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        try:
            os.rmdir(self.folder)
        except OSError:  # a record left by a process that did not end: the next run looks at it
            pass


def end_leftovers(root: os.PathLike, grace: float = 5.0) -> int:
    """End process groups that earlier runs recorded in *root* and left alive; returns how many.

    Call it while holding the work directory (one run at a time): every run folder
    under *root* then belongs to a run that is over.

    A group outlives its leader while any member runs (MPI ranks under a launcher
    that died), and its id is not reused until the last member is gone. A record
    whose pid now leads another process (a different start time), or whose group
    is empty, is only removed.
    """
    root = os.fspath(root)
    try:
        runs = [os.path.join(root, name) for name in os.listdir(root)]
    except FileNotFoundError:
        return 0
    alive = []
    for folder in runs:
        alive.extend(_recorded_alive(folder))
    for pgid in alive:
        logger.warning("Ending process group %d, left running by an earlier run of this work directory.", pgid)
        _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while alive and time.monotonic() < deadline and any(_group_alive(p) for p in alive):
        time.sleep(0.05)
    for pgid in alive:
        _signal_group(pgid, signal.SIGKILL)
    for folder in runs:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
    return len(alive)


def _recorded_alive(folder: str) -> list:
    """The process groups recorded in *folder* that still have members."""
    try:
        names = os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []
    alive = []
    for name in names:
        path = os.path.join(folder, name)
        try:
            pgid = int(name)
            with open(path) as fh:
                started = fh.read().strip()
        except (ValueError, OSError):
            continue
        leader = _start_time(pgid)
        if _group_alive(pgid) and (leader is None or leader == started):
            alive.append(pgid)
    return alive


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False
