"""``python -m scalems status [WORK_DIR]``: where the latest run stands, task by task.

Read-only and lock-free (see :mod:`.runview`), so it works while the run is live
and never delays it. Exit status: 0 if nothing failed, 1 if a task failed, was
not run, was cancelled, or the run was killed; 2 if WORK_DIR holds no record.

``--json`` prints one object (``"format": "scalems-status/1"``)::

    {
      "format": "scalems-status/1",
      "work_dir": "/abs/path",
      "run": {"id": 3, "state": "ended",       # ended | live | killed | unknown (other host, not ended)
              "started": 1796188250.99, "ended": 1796188252.13,   # seconds since the epoch; ended null unless ended
              "pid": 24282, "host": "node1", "backend": "local",
              "budget": {"cores": 8, "gpus": 0}},                  # null where the backend queues work itself
      "complete": true,                        # false while live or after a kill: "tasks" lists what is known
      "ok": false,                             # the exit status is 0 exactly when this is true
      "summary": "10 tasks: 7 done, 2 failed, 1 not run (a task they need failed)",
      "counts": {"added": 10, "cached": 0, "waiting": 0, "ready": 0, "running": 0,
                 "done": 7, "failed": 3, "cancelled": 0, "not run": 1},   # "failed" includes "not run"
      "running": ["md-3"],                     # labels running at the last refresh (live runs)
      "tasks": [
        {"label": "bad", "uid": "a5c2…", "kind": "executable",   # or "function"
         "state": "failed",      # done | failed | not run | cancelled | running | unfinished
         "cached": false,        # its result came from an earlier run
         "exitcode": 3,          # of the last attempt (executables); null for functions
         "error": "Task 'bad' failed …",   # why it failed / was not run; null if it did not
         "attempts": 2, "duration": 0.11,  # attempts in this run, seconds running (all attempts; null: did not run)
         "started": 1796188251.16, "ended": 1796188251.27,  # first start, last end in this run (or null)
         "place": "cores 0",     # where the last attempt ran
         "stderr": "/abs/path/scalems_tasks/bad/stderr",   # of a failed task, if there is one
         "recorded": false,      # the record holds its result (false for failures, and after forget)
         "stderr_tail": ["…"]}   # only with --failed, for failed tasks: last lines of stderr (null: none)
      ]
    }

Tasks are sorted by label (``md-2`` before ``md-10``).
"""

from __future__ import annotations

__all__ = ("add_parser", "run", "as_json")

import argparse
import json
import sys
import time

from . import text
from .runview import RunView, load_run

FORMAT = "scalems-status/1"


def add_parser(subparsers, formatter) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "status",
        formatter_class=formatter,
        help="Where the latest run stands: counts and a table of its tasks (works while it runs).",
        description="Show the latest run of a work directory: a summary line and every task with its state, "
        "exit status or exception, attempts and duration. Read-only: works while the run is live. "
        "Exit status 0 if nothing failed, 1 otherwise, 2 if WORK_DIR holds no record.",
    )
    parser.add_argument("work_dir", metavar="WORK_DIR", nargs="?", help="The run's work directory (default: current directory).")
    parser.add_argument("--failed", action="store_true", help=f"Add the last {text.TAIL_LINES} lines of each failed task's stderr.")
    parser.add_argument("--json", action="store_true", help='Print one JSON object for scripts ("format": "scalems-status/1"; its fields: python -m pydoc scalems.cli.status).')
    parser.add_argument("--run", type=int, metavar="N", help="Show run N instead of the latest.")
    parser.set_defaults(command=run, command_name="status")
    return parser


def run(args) -> int:
    view = load_run(args.work_dir, args.run)
    if args.json:
        # Indented for a person at a terminal; compact otherwise: json.dumps without indent is the C
        # encoder, json.dump and indenting are pure Python (seconds for 100,000 tasks).
        sys.stdout.write(json.dumps(as_json(view, tails=args.failed), indent=2 if sys.stdout.isatty() else None) + "\n")
    else:
        sys.stdout.write("\n".join(lines(view, tails=args.failed)) + "\n")
    return 0 if view.ok else 1


def as_json(view: RunView, *, tails: bool = False) -> dict:
    info = view.info
    tasks = []
    for row in view.tasks:
        item = {
            "label": row.label,
            "uid": row.uid,
            "kind": row.kind,
            "state": row.state,
            "cached": row.cached,
            "exitcode": row.exitcode,
            "error": row.error,
            "attempts": row.attempts,
            "duration": row.duration,
            "started": row.started,
            "ended": row.ended,
            "place": row.place,
            "stderr": row.stderr,
            "recorded": row.recorded,
        }
        if tails and row.state == "failed":
            item["stderr_tail"] = text.tail(row.stderr)
        tasks.append(item)
    return {
        "format": FORMAT,
        "work_dir": str(view.directory),
        "run": {
            "id": info.id,
            "state": view.state,
            "started": info.started,
            "ended": info.ended,
            "pid": info.pid,
            "host": info.host,
            "backend": info.backend,
            "budget": info.budget,
        },
        "complete": view.complete,
        "ok": view.ok,
        "summary": text.summary_line(view),
        "counts": view.counts,
        "running": list(info.running or ()) if view.state != "ended" else [],
        "tasks": tasks,
    }


def lines(view: RunView, *, tails: bool = False) -> list:
    out = [text.run_line(view), text.summary_line(view)]
    info = view.info
    if view.state != "ended" and info.running:
        shown = ", ".join(info.running[:20]) + (f", … ({len(info.running)} in all)" if len(info.running) > 20 else "")
        out.append(f"Running at the last refresh: {shown}")
    out.append("")
    if view.tasks:
        out += text.table(
            ("LABEL", "KIND", "STATE", "EXIT / ERROR", "ATTEMPTS", "DURATION", "CACHED"),
            (
                (
                    row.label,
                    row.kind,
                    row.state,
                    text.outcome_text(row),
                    row.attempts if row.attempts or not row.cached else "",
                    text.duration(row.duration),
                    "yes" if row.cached else "",
                )
                for row in view.tasks
            ),
            right=(4, 5),
        )
    else:
        out.append("No task has finished an attempt yet.")
    if not view.complete:
        unlisted = info.counts.get("added", 0) - len(view.tasks)
        if unlisted > 0:
            out.append(
                f"({unlisted} more task(s) are known by count only until they finish an attempt: "
                "cached results, tasks waiting for inputs or resources, tasks not added yet.)"
            )
    forgotten = [row for row in view.tasks if row.state == "done" and not row.recorded]
    if forgotten:
        out.append(
            f"({len(forgotten)} of these results have since been forgotten (python -m scalems forget): "
            "the next run executes them again.)"
        )
    if tails:
        out += _failure_tails(view)
    if view.state == "live":
        out.append(f"(as of {time.strftime('%H:%M:%S')}; the run refreshes its counts every 2 s)")
    return out


def _failure_tails(view: RunView) -> list:
    out = []
    for row in view.rows("failed"):
        tried = f"{row.attempts} attempts" if row.attempts != 1 else "1 attempt"
        out += ["", f"--- {row.label} ({row.kind}, {tried})"]
        if row.error:
            out.append(f"    {row.error}")
        lines = text.tail(row.stderr)
        if lines is None:
            if row.kind == "function":
                out.append("    (no stderr file: function tasks run in shared worker processes; the message is the error)")
            else:
                out.append("    (no stderr file found)")
        elif not lines:
            out.append(f"    {row.stderr} is empty.")
        else:
            out.append(f"    last {len(lines)} line(s) of {row.stderr}:")
            out += ["    | " + line for line in lines]
    return out
