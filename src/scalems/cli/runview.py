"""One run of a work directory, as ``status`` and ``report`` show it, assembled from the record.

The record's run history (:mod:`scalems.store.history`) is read without the
work directory's lock, so this works while the run is live. What is known
depends on that:

* a run that *ended* listed every task and how it ended: finished tasks by uid
  (named through the task record, or through their attempts once ``forget``
  dropped the record), the others with label, state and reason;
* a *live* run (or one that was *killed*) is known by its counts, the labels
  running at its last refresh (every 2 s) and the attempts that finished.

A task that failed without an attempt in the run was not run: a task it needs
failed (or the backend could not start); its state is ``not run``.
"""

from __future__ import annotations

__all__ = ("UsageError", "TaskRow", "RunView", "load_run", "natural_key", "record_path")

import collections
import dataclasses
import json
import os
import pathlib
import re
import socket
import typing

from scalems.exceptions import StoreError
from scalems.store import LAYOUT
from scalems.store.lock import pid_alive
from scalems.store.history import UID_PREFIX, AttemptInfo, HistoryReader, RunInfo, split_uids
from scalems.workflow.naming import TASKS_DIRNAME, safe_name

#: States of a task row. ``done``/``failed``/``cancelled`` as the run ended them; ``not run``: failed
#: without running; ``running``: at the live run's last refresh; ``unfinished``: running when it was killed.
ROW_STATES = ("done", "failed", "not run", "cancelled", "running", "unfinished", "waiting", "ready")
#: Row states that make ``status`` exit with 1.
BAD_STATES = frozenset({"failed", "not run", "cancelled", "unfinished"})

_STDERR_IN_MESSAGE = re.compile(r"\(stderr: (.+?)\)\s*$")


class UsageError(Exception):
    """The command cannot do what was asked (no record there, no such run, ...): exit status 2."""


@dataclasses.dataclass
class TaskRow:
    """One task of the run, with what its attempts in this run say."""

    label: str
    uid: typing.Optional[str]
    kind: str
    state: str
    cached: bool = False
    exitcode: typing.Optional[int] = None
    error: typing.Optional[str] = None
    attempts: int = 0
    #: Seconds spent running in this run, all attempts together (None: it did not run).
    duration: typing.Optional[float] = None
    started: typing.Optional[float] = None
    ended: typing.Optional[float] = None
    #: Where its last attempt ran ("cores 0-3", "worker 4242", an RP task id).
    place: typing.Optional[str] = None
    #: The stderr file of a task that ran and failed, if there is one.
    stderr: typing.Optional[str] = None
    #: False once the record no longer holds its result (``python -m scalems forget``).
    recorded: bool = True


@dataclasses.dataclass
class RunView:
    directory: pathlib.Path
    info: RunInfo
    #: ended, live, killed (its process is gone without ending it) or unknown (started on another host).
    state: str
    tasks: typing.List[TaskRow]
    attempts: typing.List[AttemptInfo]

    @property
    def complete(self) -> bool:
        """True if :attr:`tasks` lists every task of the run (it ended)."""
        return self.info.tasks is not None

    @property
    def counts(self) -> dict:
        counts = dict(self.info.counts)
        counts["not run"] = sum(1 for row in self.tasks if row.state == "not run")
        return counts

    @property
    def budget(self) -> typing.Optional[dict]:
        return self.info.budget

    def rows(self, *states: str) -> typing.List[TaskRow]:
        return [row for row in self.tasks if row.state in states]

    @property
    def ok(self) -> bool:
        """Nothing failed, was cancelled or left unfinished (``status`` exits with 0)."""
        counts = self.info.counts
        if self.state == "killed" or counts.get("failed") or counts.get("cancelled"):
            return False
        return not any(row.state in BAD_STATES for row in self.tasks)


def record_path(directory: pathlib.Path) -> pathlib.Path:
    return directory / LAYOUT / "record.sqlite"


def check_work_dir(work_dir: typing.Union[str, os.PathLike, None]) -> pathlib.Path:
    """The absolute work directory, if it holds a record; else UsageError saying what to give."""
    directory = pathlib.Path(work_dir if work_dir is not None else os.getcwd()).absolute()
    if not directory.exists():
        raise UsageError(f"{directory} does not exist. Give the work directory of a scalems run.")
    if not directory.is_dir():
        raise UsageError(f"{directory} is not a directory. Give the work directory of a scalems run.")
    if not record_path(directory).is_file():
        raise UsageError(
            f"{directory} has no scalems record ({LAYOUT}/record.sqlite): no workflow has run there. Give the "
            "work directory of a run (the --work-dir of python -m scalems.local, by default the directory it ran in)."
        )
    return directory


def open_history(directory: pathlib.Path) -> HistoryReader:
    try:
        return HistoryReader(record_path(directory))
    except StoreError as error:
        raise UsageError(str(error)) from None


def load_run(work_dir=None, run_id: typing.Optional[int] = None) -> RunView:
    """The latest run (or run *run_id*) of *work_dir* (default: the current directory)."""
    directory = check_work_dir(work_dir)
    with open_history(directory) as reader:
        info = reader.run(run_id)
        if info is None:
            ids = reader.run_ids()
            if not ids:
                raise UsageError(
                    f"The record in {directory} holds no run history (it was written by an older scalems): "
                    "run the workflow once more to see its status."
                )
            raise UsageError(f"{directory} has no run {run_id}; its runs are {_span(ids)}.")
        attempts = reader.attempts(info.id)
        if info.tasks is not None:
            rows = _ended_rows(directory, reader, info, attempts)
        else:
            rows = _live_rows(info, attempts)
    state = run_state(info, directory)
    if state == "killed":
        for row in rows:
            if row.state == "running":
                row.state = "unfinished"
    rows.sort(key=lambda row: natural_key(row.label))
    return RunView(directory, info, state, rows, attempts)


def _span(ids: list) -> str:
    return f"{ids[0]}" if len(ids) == 1 else f"{ids[0]} to {ids[-1]}"


def _by_uid(attempts: typing.Iterable[AttemptInfo]) -> dict:
    grouped = collections.defaultdict(list)
    for attempt in attempts:
        grouped[attempt.uid].append(attempt)
    return grouped


def _apply_attempts(row: TaskRow, tried: typing.Optional[list]) -> TaskRow:
    if tried:
        row.attempts = len(tried)
        row.duration = sum(max(0.0, a.ended - a.started) for a in tried)
        row.started = min(a.started for a in tried)
        row.ended = max(a.ended for a in tried)
        last = max(tried, key=lambda a: (a.attempt, a.ended))
        row.place = last.place
        row.exitcode = last.exitcode
        if row.error is None and last.outcome != "done":
            row.error = last.error
    return row


def _ended_rows(directory: pathlib.Path, reader: HistoryReader, info: RunInfo, attempts: list) -> list:
    by_uid = _by_uid(attempts)
    listed = info.tasks
    if "cached16" in listed:
        cached = reader.complete_uids(split_uids(listed["cached16"], UID_PREFIX))
    else:  # runs recorded with whole uids
        cached = split_uids(listed.get("cached"))
    if "done" in listed:  # runs recorded before the done tasks were left to their attempts
        done = split_uids(listed["done"])
    else:
        others = {entry[0] for entry in listed.get("other", ())}
        done = [uid for uid, tried in by_uid.items() if uid not in others and any(a.outcome == "done" for a in tried)]
    records = reader.tasks(done + cached)
    unnamed = [uid for uid in done + cached if uid not in records]
    names = reader.names(unnamed) if unnamed else {}
    rows = []
    for uids, from_cache in ((done, False), (cached, True)):
        for uid in uids:
            record = records.get(uid)
            label, kind = record[:2] if record is not None else names.get(uid, (uid[:12], ""))
            row = TaskRow(label, uid, kind, "done", cached=from_cache, recorded=record is not None and record[2] == "complete")
            rows.append(_apply_attempts(row, by_uid.get(uid)))
    for uid, label, kind, state, error in listed.get("other", ()):
        tried = by_uid.get(uid)
        if state == "failed" and not tried:
            state = "not run"
        row = _apply_attempts(TaskRow(label, uid, kind, state, error=error, recorded=False), tried)
        if state == "failed":
            row.stderr = _stderr_of(directory, row)
        rows.append(row)
    return rows


def _live_rows(info: RunInfo, attempts: list) -> list:
    rows = {}
    for uid, tried in _by_uid(attempts).items():
        last = max(tried, key=lambda a: (a.attempt, a.ended))
        state = {"done": "done", "cancelled": "cancelled"}.get(last.outcome, "failed")
        rows[last.label] = _apply_attempts(TaskRow(last.label, uid, last.kind, state), tried)
    for label in info.running or ():
        row = rows.get(label)
        if row is None:
            rows[label] = TaskRow(label, None, "", "running")  # its kind is known once an attempt ends
        else:
            row.state, row.error = "running", None  # a retry of a failed attempt
    return list(rows.values())


def _stderr_of(directory: pathlib.Path, row: TaskRow) -> typing.Optional[str]:
    """The stderr file a failed task's message names, else the one in its task directory."""
    found = _STDERR_IN_MESSAGE.search(row.error or "")
    if found and os.path.isfile(found.group(1)):
        return found.group(1)
    tasks = directory / TASKS_DIRNAME
    for name in (safe_name(row.label), f"{safe_name(row.label)}-{(row.uid or '')[:8]}"):
        candidate = tasks / name / "stderr"
        if candidate.is_file():
            return str(candidate)
    return None


def run_state(info: RunInfo, directory: pathlib.Path) -> str:
    """ended, live, killed or unknown (a run on another host that has not ended: it may be either)."""
    if info.ended is not None:
        return "ended"
    if info.host != socket.gethostname():
        return "unknown"
    if not pid_alive(info.pid):
        return "killed"
    try:
        with open(directory / LAYOUT / "owner.json") as fh:
            owner = json.load(fh)
    except (OSError, ValueError):
        owner = None
    # The owner's note names the live run's process; without it, the pid was reused by another process.
    if isinstance(owner, dict) and owner.get("pid") == info.pid:
        return "live"
    return "killed"


def natural_key(label: str) -> tuple:
    """Sort key putting ``md-2`` before ``md-10``."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", label))
