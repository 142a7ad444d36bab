"""Files as workflow data: declared outputs and references to files of other tasks.

``scalems.output_file("topol.tpr")`` in a task's argv declares a file the task
will write in its working directory. ``task.file["topol.tpr"]`` names that
file before the task has run, so another task can take it as input; the
dependency is then part of the workflow graph.
"""

from __future__ import annotations

__all__ = ("OutputFile", "FileReference", "output_file")

import os
import pathlib
import typing


class OutputFile:
    """Placeholder for a file that a task writes, relative to its working directory.

    In an argv it becomes the file's name (relative path) on the command line.
    """

    __slots__ = ("name", "label")

    def __init__(self, name: str, label: typing.Optional[str] = None):
        name = os.fspath(name)
        path = pathlib.PurePosixPath(name)
        if not name or path.is_absolute() or ".." in path.parts:
            raise ValueError(
                f"output_file({name!r}): an output file must be a relative path inside the task's directory"
            )
        self.name = str(path)
        self.label = label

    def __repr__(self):
        return f"scalems.output_file({self.name!r})"

    def __eq__(self, other):
        return isinstance(other, OutputFile) and other.name == self.name

    def __hash__(self):
        return hash(("OutputFile", self.name))


_counter = iter(range(1, 1 << 62))


def output_file(
    filename: typing.Optional[str] = None, *, label: typing.Optional[str] = None, suffix: typing.Optional[str] = None
) -> OutputFile:
    """Declare a file the task will write (a relative path in the task's working directory).

    Args:
        filename: the file name. If omitted, a name is generated from *label*
            (or ``"output"``) and *suffix*, e.g. ``output_file(suffix=".tpr")``.
        label: a name for the output, used to build *filename* when it is omitted.
        suffix: file suffix for a generated name.
    """
    if filename is None:
        stem = label or "output"
        filename = f"{stem}{suffix or ''}"
    elif suffix and not str(filename).endswith(suffix):
        filename = f"{filename}{suffix}"
    return OutputFile(filename, label=label)


class FileReference(os.PathLike):
    """A file produced by a task: ``task.file[name]``.

    Usable as input to other tasks before the producing task has run. Once the
    task is done, ``os.fspath(ref)`` (or :meth:`path`) gives the absolute path.
    *task* is the producing :class:`scalems.workflow.Task` (this module does not
    import the workflow layer, which imports it).
    """

    __slots__ = ("task", "name")

    def __init__(self, task, name: str):
        self.task = task
        self.name = name

    def path(self) -> pathlib.Path:
        """Absolute path of the file; waits for the producing task to finish."""
        result = self.task.result()
        return pathlib.Path(result.file[self.name])

    def __fspath__(self) -> str:
        if not self.task.done():
            raise RuntimeError(
                f"{self!r} is not available yet: task {self.task.label!r} has not finished. "
                "Pass the reference itself to another task, or call .path() to wait for it."
            )
        return str(self.path())

    def __repr__(self):
        return f"<FileReference {self.task.label}:{self.name}>"

    def __eq__(self, other):
        return isinstance(other, FileReference) and other.task is self.task and other.name == self.name

    def __hash__(self):
        return hash((id(self.task), self.name))
