"""Finding the processes of a run on this machine, by the marks they carry.

Processes that detach from their parent (RP's agent, a pilot job's tasks, programs a task
started) cannot be found through the process tree. They still carry marks of the run that
started them: a session id or folder in their command line, working directory or
environment. Clean-up code and tests look for those marks in ``/proc``.
"""

from __future__ import annotations

__all__ = ("processes_marked",)

import os
import typing


def processes_marked(markers: typing.Sequence[typing.Union[str, bytes]], *, any_user: bool = False) -> typing.List[int]:
    """PIDs of live processes whose command line, working directory or environment holds a marker.

    This process and zombies are left out, and (unless *any_user*) other users' processes.
    Empty where there is no ``/proc``.
    """
    needles = [marker.encode() if isinstance(marker, str) else marker for marker in markers]
    me = os.getpid()
    uid = os.getuid()
    found = []
    try:
        entries = os.listdir("/proc")
    except OSError:  # pragma: no cover - not Linux
        return found
    for entry in entries:
        if not entry.isdigit() or int(entry) == me:
            continue
        base = f"/proc/{entry}"
        try:
            if not any_user and os.stat(base).st_uid != uid:
                continue
            with open(f"{base}/stat", "rb") as fh:
                if fh.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    continue
            with open(f"{base}/cmdline", "rb") as fh:
                text = fh.read()
            # RP renames its processes (setproctitle), but they run in session/pilot/task folders.
            try:
                text += b"\0" + os.fsencode(os.readlink(f"{base}/cwd"))
            except OSError:
                pass
            try:
                with open(f"{base}/environ", "rb") as fh:
                    text += b"\0" + fh.read()
            except OSError:
                pass
        except (OSError, IndexError):
            continue
        if any(needle in text for needle in needles):
            found.append(int(entry))
    return found
