"""Task labels and the task directories named after them.

A label names a task in messages, in the record and on disk
(``<work dir>/scalems_tasks/<label>/``). Labels are unique within a workflow;
a task added without one gets ``<program or function>-<first uid digits>``,
which is stable across runs because the uid is. Labels are free text, so the
directory name is a sanitised form; two labels that sanitise alike get
directories of their own.
"""

from __future__ import annotations

__all__ = ("TaskNames", "TASKS_DIRNAME", "safe_name")

import functools
import itertools
import os
import pathlib
import re

from scalems.exceptions import DuplicateKeyError

#: Where task working directories go, under the work directory.
TASKS_DIRNAME = "scalems_tasks"

#: Digits of the uid in a default label (``name-1a2b3c4d``); more where two tasks share them.
LABEL_DIGITS = 8

_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def safe_name(text: str) -> str:
    """*text* as a file name: runs of other characters become ``_``."""
    return _UNSAFE.sub("_", text).strip("._") or "task"


@functools.lru_cache(maxsize=256)
def _safe_prefix(name: str) -> str:
    """:func:`safe_name` of a function or program name (few distinct ones, each used many times)."""
    return safe_name(name)


class TaskNames:
    """Labels of one workflow and their directories.

    Not thread-safe by itself: the task graph calls it with its lock held.
    """

    __slots__ = ("tasks_dir", "labels", "_dir_owner", "_dir_renamed")

    def __init__(self, work_dir: os.PathLike):
        self.tasks_dir = os.path.join(os.fspath(work_dir), TASKS_DIRNAME)
        self.labels: dict = {}  # label -> uid
        self._dir_owner: dict = {}  # directory name -> the label that has it
        self._dir_renamed: dict = {}  # label -> directory name, where its own name was taken

    def owner(self, label: str, uid: str):
        """The uid already named *label*, or None; a different uid under the same label is an error."""
        known = self.labels.get(label)
        if known is not None and known != uid:
            raise DuplicateKeyError(
                f"Label {label!r} is already used by a different task in this workflow; labels must be unique."
            )
        return known

    def alias(self, label: str, uid: str) -> None:
        """A second label for a task that already has one (the same work added again)."""
        self.labels[label] = uid

    def claim(self, label, uid: str, spec, fits=None) -> str:
        """Register the label of a new task (choosing one from *spec* when *label* is None); returns it.

        *fits(label, resources)* is checked first: a task that can never run takes no label.
        """
        labels = self.labels
        if label is None:
            name = spec.default_name()
            label = f"{_safe_prefix(name)}-{uid[:LABEL_DIGITS]}"
            if label in labels:  # another task's uid starts alike: likely among ~100k tasks
                label = self._longer_label(name, uid)
            dirname = label  # already safe
        else:
            dirname = safe_name(label)
        if fits is not None:
            fits(label, spec.resources)
        labels[label] = uid
        if self._dir_owner.setdefault(dirname, label) != label:  # labels differing only in unsafe characters
            self._dir_renamed[label] = f"{dirname}-{uid[:LABEL_DIGITS]}"
        return label

    def _longer_label(self, name: str, uid: str) -> str:
        prefix = _safe_prefix(name)
        for digits in (16, len(uid)):
            label = f"{prefix}-{uid[:digits]}"
            if label not in self.labels:
                return label
        return next(f"{label}-{n}" for n in itertools.count(2) if f"{label}-{n}" not in self.labels)

    def directory(self, label: str) -> pathlib.Path:
        """The working directory of the task labelled *label*."""
        name = self._dir_renamed.get(label) or safe_name(label)
        return pathlib.Path(os.path.join(self.tasks_dir, name))
