"""Words and layout shared by the commands: durations, times, aligned tables, stderr tails."""

from __future__ import annotations

__all__ = ("duration", "when", "table", "shorten", "tail", "outcome_text", "summary_line", "run_line")

import os
import re
import time
import typing

#: Lines of a failed task's stderr that ``status --failed`` and ``report`` show.
TAIL_LINES = 20
_TAIL_BYTES = 64 * 1024
_LINE_CHARS = 400

_UPSTREAM = re.compile(r"was not run because task (.+?) it depends on failed")


def duration(seconds: typing.Optional[float]) -> str:
    """``310 ms``, ``1.5 s``, ``12 s``, ``4 min 05 s``, ``2 h 03 min``, ``3 d 04 h``."""
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 10:
        return f"{seconds:.1f} s"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours:02d} h"


def when(epoch: typing.Optional[float]) -> str:
    """Local date and time to the second."""
    return "" if epoch is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def shorten(text: typing.Optional[str], width: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


def table(headers: typing.Sequence[str], rows: typing.Iterable[typing.Sequence[str]], right: typing.Collection[int] = ()) -> list:
    """Lines of a table whose columns are aligned (right-aligned where their index is in *right*)."""
    rows = [list(map(str, row)) for row in rows]
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells):
        parts = [cell.rjust(widths[i]) if i in right else cell.ljust(widths[i]) for i, cell in enumerate(cells)]
        return "  ".join(parts).rstrip()

    return [line(headers), *(line(row) for row in rows)]


def tail(path: typing.Optional[str], lines: int = TAIL_LINES) -> typing.Optional[typing.List[str]]:
    """The last *lines* lines of a text file (read from its end: a stderr can be gigabytes); None if unreadable."""
    if not path:
        return None
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - _TAIL_BYTES))
            data = fh.read()
    except OSError:
        return None
    text = data.decode("utf-8", errors="replace").splitlines()
    if size > _TAIL_BYTES and text:
        text = text[1:]  # the first line read is probably cut
    return [line if len(line) <= _LINE_CHARS else line[: _LINE_CHARS - 1] + "…" for line in text[-lines:]]


def outcome_text(row, width: int = 60) -> str:
    """The "exit status or exception" of a task row, short."""
    if row.state == "not run":
        found = _UPSTREAM.search(row.error or "")
        return shorten(f"needs {found.group(1)}, which failed" if found else row.error, width)
    if row.state in ("done", "running", "unfinished") or row.error is None:
        if row.exitcode is not None:
            return f"exit {row.exitcode}"
        return "" if row.state != "unfinished" else "the run was killed"
    if row.exitcode not in (None, 0):
        return f"exit {row.exitcode}"
    return shorten(_essence(row.error), width)


def _essence(message: str) -> str:
    """A failure message without what the table's other columns say (its label, the stderr path)."""
    message = re.sub(r"\s*\(stderr: .+?\)\s*$", "", message)
    return re.sub(r"^Task '.*?' failed(?: in all \d+ attempts)?: ", "", message)


def summary_line(view) -> str:
    """``10 tasks: 7 done (2 from earlier runs), 2 failed, 1 not run (a task it needs failed)``."""
    counts = view.counts
    not_run = counts.get("not run", 0)
    failed = counts.get("failed", 0) - not_run if view.complete else counts.get("failed", 0)
    parts = [f"{counts.get('done', 0)} done" + (f" ({counts['cached']} from earlier runs)" if counts.get("cached") else "")]
    if view.state != "ended":
        for state in ("running", "ready", "waiting"):
            if counts.get(state):
                word = state if view.state != "killed" else f"{state} when the run was killed"
                parts.append(f"{counts[state]} {word}")
    if failed:
        parts.append(f"{failed} failed")
    if not_run:
        parts.append(f"{not_run} not run (a task they need failed)")
    if counts.get("cancelled"):
        parts.append(f"{counts['cancelled']} cancelled")
    return f"{counts.get('added', 0)} tasks: " + ", ".join(parts)


def run_line(view) -> str:
    """Which run, when, and whether it is over."""
    info = view.info
    budget = info.budget or {}
    where = f"{info.backend}"
    if budget.get("cores"):
        where += f", {budget['cores']} cores" + (f", {budget['gpus']} GPUs" if budget.get("gpus") else "")
    where += f", pid {info.pid} on {info.host}"
    head = f"Run {info.id} in {view.directory} ({where})"
    if view.state == "ended":
        return f"{head}: started {when(info.started)}, ended after {duration(info.ended - info.started)}"
    if view.state == "live":
        return f"{head}: started {when(info.started)}, running for {duration(time.time() - info.started)}"
    if view.state == "killed":
        return f"{head}: started {when(info.started)}; it did not end (its process was killed or crashed)"
    return f"{head}: started {when(info.started)}; not ended (it ran on another host: live or killed, cannot tell from here)"
