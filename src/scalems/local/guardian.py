"""No orphans: the programs a run started end with it, however the run ends.

A run stops its tasks itself on every exit it controls (end of the script,
Ctrl-C, SIGTERM). For the exits it does not control (``kill -9``, a crash,
the terminal closing), a small guardian process watches the run: it holds the
read end of a pipe whose only write end the run holds, so it reads end of
file the moment the run is gone, for whatever reason. It then ends every
process that carries the run's mark (SIGTERM, a grace period, SIGKILL).

The mark is an environment variable, ``SCALEMS_RUN``, in the environment of
every task and warm worker the run starts; their children (MPI ranks, what a
function starts) inherit it. Marking costs a task nothing (its environment is
built anyway), where recording each process in a file cost a quarter of a
millisecond. The guardian is a ``/bin/sh`` loop, not a Python process, so it
costs a run about a millisecond.

Each run has a folder of its own (``running/<run pid>``), removed when the run
ends cleanly. A later run that finds the folder of a run that is over (its
guardian was killed too) ends the processes with that run's mark before it
starts anything, so a task never runs twice at once in one work directory.
"""

from __future__ import annotations

__all__ = ("Guardian", "end_leftovers", "MARK")

import logging
import os
import signal
import subprocess
import time
import typing

logger = logging.getLogger(__name__)

#: The environment variable that marks the processes of a run (its value: the run's folder).
MARK = "SCALEMS_RUN"

# Read one line: "q" is a clean stop. End of file means the run is gone: end what carries its mark.
_SCRIPT = r"""
if read line; then exit 0; fi
marked() { grep -lsxz "SCALEMS_RUN=$1" /proc/[0-9]*/environ | cut -d/ -f3; }
pids=$(marked "$1")
[ -n "$pids" ] && kill -TERM $pids 2>/dev/null && sleep "$2"
pids=$(marked "$1")
[ -n "$pids" ] && kill -KILL $pids 2>/dev/null
rmdir "$1" 2>/dev/null
exit 0
"""


class Guardian:
    """The guardian of one run; :attr:`environment` is the mark to put into every process it starts.

    *root* holds one folder per run, so a late guardian of a dead run never touches
    the processes of the next one.
    """

    def __init__(self, root: os.PathLike, grace: float = 5.0):
        self.folder = os.path.join(os.fspath(root), str(os.getpid()))
        os.makedirs(self.folder, exist_ok=True)
        #: Variables to add to the environment of every process of the run.
        self.environment = {MARK: self.folder}
        read_end, self._write_end = os.pipe()
        environment = {key: value for key, value in os.environ.items() if key != MARK}
        try:
            self._process = subprocess.Popen(
                ["/bin/sh", "-c", _SCRIPT, "scalems-guardian", self.folder, str(grace)],
                stdin=read_end,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=environment,
                start_new_session=True,  # Ctrl-C in the terminal is the run's to handle, not the guardian's
            )
        finally:
            os.close(read_end)

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
        except OSError:
            pass


def end_leftovers(root: os.PathLike, grace: float = 5.0) -> int:
    """End the processes of earlier runs recorded in *root* that are over; returns how many.

    Call it while holding the work directory (one run at a time): every run folder
    under *root* then belongs to a run that is over. Without such a folder (every
    earlier run ended cleanly) nothing is scanned.
    """
    root = os.fspath(root)
    try:
        folders = [os.path.join(root, name) for name in os.listdir(root)]
    except FileNotFoundError:
        return 0
    if not folders:
        return 0
    marks = {f"{MARK}={folder}".encode() for folder in folders}
    pids = _marked(marks)
    for pid in pids:
        logger.warning("Ending process %d, left running by an earlier run of this work directory.", pid)
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline and _marked(marks):
        time.sleep(0.05)
    for pid in _marked(marks):
        _signal(pid, signal.SIGKILL)
    for folder in folders:
        try:
            os.rmdir(folder)
        except OSError:
            pass
    return len(pids)


def _marked(marks: typing.Collection[bytes]) -> list:
    """Pids of the processes whose environment holds one of *marks*."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                environment = fh.read().split(b"\0")
        except OSError:
            continue
        if any(mark in environment for mark in marks):
            found.append(int(entry))
    return found


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
