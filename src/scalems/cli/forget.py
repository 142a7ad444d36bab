"""``python -m scalems forget [--work-dir DIR] LABEL... | --failed``: compute these again next time.

Dropping a task's record makes the next run execute it. That is not enough
for what was computed from it: a dependent's identity is made of its inputs'
*uids*, not their content, so a re-run that reproduces the same uid upstream
finds the dependent's old record and uses it. ``forget`` therefore also drops
the records of every task that (directly or not) took input from a forgotten
one, found through the ``upstream`` uids each attempt row of the run history
keeps (record layout 3).

A label names every recorded result under it (an edited script may have left
several); an ensemble's label (``md``) names its members (``md-0``, ...).
``--failed`` names every recorded failure and the tasks that failed, were not
run or were cancelled in the latest run (their failure records, and the
results of any task computed from them, as an earlier run may have left). The record is changed only while no run owns the work
directory: a live run is named and nothing is changed.
"""

from __future__ import annotations

__all__ = ("add_parser", "run", "plan")

import argparse
import collections
import dataclasses
import difflib
import re
import sys
import typing

from scalems.exceptions import StoreError, StoreLockedError
from scalems.store import FileStore
from scalems.store.history import HistoryReader, split_uids

from .runview import UsageError, check_work_dir, natural_key, open_history


def add_parser(subparsers, formatter) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "forget",
        formatter_class=formatter,
        help="Drop recorded results so the next run executes those tasks and their dependents again.",
        description="Drop the recorded results of the named tasks and of every task computed from them, so that "
        "the next run in the work directory executes them again. Refused while a run uses the work directory.",
    )
    parser.add_argument("labels", metavar="LABEL", nargs="*", help="Task labels (an ensemble's label names all its members).")
    parser.add_argument("--work-dir", metavar="DIR", help="The work directory (default: current directory).")
    parser.add_argument("--failed", action="store_true", help="Forget the recorded failures, and the results of tasks computed from them or from the latest run's failed tasks.")
    parser.add_argument("--dry-run", action="store_true", help="Say what would be forgotten; change nothing.")
    parser.set_defaults(command=run, command_name="forget")
    return parser


@dataclasses.dataclass
class Plan:
    """What to forget: uid -> (label, state, reason), and notes for the user."""

    forget: typing.Dict[str, tuple]
    notes: typing.List[str]


def run(args) -> int:
    directory = check_work_dir(args.work_dir)
    if not args.labels and not args.failed:
        raise UsageError("name the tasks to forget (LABEL...), or give --failed")
    store = None
    if not args.dry_run:
        store = FileStore(directory)
        try:
            store.open()  # owning the work directory first: no run may start while the plan is made and applied
        except StoreLockedError as error:
            print(
                f"python -m scalems forget: error: {directory} is in use by a scalems run ({error.owner}). forget "
                "changes the record that run is writing: wait for the run to end (or stop it), then forget.",
                file=sys.stderr,
            )
            return 1
        except StoreError as error:
            print(f"python -m scalems forget: error: {error}", file=sys.stderr)
            return 1
    try:
        with open_history(directory) as reader:
            found = plan(reader, args.labels, failed=args.failed)
        if store is not None:
            for uid in found.forget:
                store.forget_task(uid)
    finally:
        if store is not None:
            store.close()
    _print(found, directory, dry_run=args.dry_run)
    return 0


def plan(reader: HistoryReader, labels: typing.Sequence[str], *, failed: bool = False) -> Plan:
    """The records to drop for *labels* (and the latest run's failures if *failed*), with their dependents.

    Raises UsageError naming unknown labels and their close matches.
    """
    recorded: dict = {}  # uid -> (label, state)
    by_label = collections.defaultdict(list)
    for uid, label, _kind, state in reader.records():
        recorded[uid] = (label, state)
        by_label[label].append(uid)
    latest = reader.run()
    other = (latest.tasks or {}).get("other", []) if latest is not None else []
    notes = []
    roots: dict = {}  # uid -> why
    history = reader.labels() | {entry[1] for entry in other}
    unknown = []
    for label in dict.fromkeys(labels):
        if label in by_label:
            roots.update(dict.fromkeys(by_label[label], "named"))
            continue
        members = _members(label, by_label)
        if members:
            for member in members:
                roots.update(dict.fromkeys(by_label[member], f"member of {label}"))
        elif label in history:
            notes.append(f"{label!r} has no recorded result (not finished, or already forgotten): it runs next time anyway.")
        else:
            unknown.append(label)
    if unknown:
        raise UsageError(_unknown(unknown, set(by_label) | history))
    if failed:
        for uid, (_label, state) in recorded.items():
            if state != "complete":
                roots.setdefault(uid, "failed")
        for uid, _label, _kind, state, _error in other:
            if state in ("failed", "cancelled"):
                roots.setdefault(uid, state)
        if not roots:
            notes.append("No failed task is recorded: nothing to forget.")
    needs = _dependents(reader, roots)
    forget = {}
    for uid, why in needs.items():
        if uid in recorded:
            label, state = recorded[uid]
            forget[uid] = (label, state, why if uid in roots else f"needs {recorded.get(why, (why[:12],))[0]}")
    if forget:
        unknown_inputs = reader.without_dependencies() - set(forget)
        if unknown_inputs:
            notes.append(
                f"{len(unknown_inputs)} recorded result(s) were written by an older scalems that did not record which "
                "tasks they used: if one of them was computed from a forgotten task, forget it too (or run with --no-cache)."
            )
    return Plan(forget, notes)


def _members(label: str, by_label: dict) -> list:
    pattern = re.compile(re.escape(label) + r"-\d+")
    return sorted((name for name in by_label if pattern.fullmatch(name)), key=natural_key)


def _dependents(reader: HistoryReader, roots: dict) -> dict:
    """*roots* and every task that took input from one of them, directly or not: uid -> the uid it needs."""
    if not roots:
        return {}
    downstream = collections.defaultdict(set)
    for uid, upstream in reader.dependencies():
        for parent in split_uids(upstream):
            downstream[parent].add(uid)
    found = dict(roots)
    frontier = list(roots)
    while frontier:
        parent = frontier.pop()
        for child in downstream.get(parent, ()):
            if child not in found:
                found[child] = parent
                frontier.append(child)
    return found


def _unknown(labels: list, known: set) -> str:
    lines = []
    for label in labels:
        close = difflib.get_close_matches(label, known, n=5, cutoff=0.6)
        hint = f"did you mean {', '.join(map(repr, close))}?" if close else "no similar label either"
        lines.append(f"no task labelled {label!r} is recorded ({hint})")
    return "; ".join(lines) + ". python -m scalems status lists the tasks of the latest run."


def _print(found: Plan, directory, *, dry_run: bool) -> None:
    forget = found.forget
    if forget:
        verb = "Would forget" if dry_run else "Forgot"
        print(f"{verb} {len(forget)} recorded result(s) in {directory}; the next run executes these tasks again:")
        rows = sorted(forget.items(), key=lambda item: natural_key(item[1][0]))
        width = max(len(label) for label, _, _ in forget.values())
        for uid, (label, state, why) in rows:
            state = "done" if state == "complete" else state
            print(f"  {label.ljust(width)}  {state:<6}  uid {uid[:12]}  ({why})")
    for note in found.notes:
        print(note)
