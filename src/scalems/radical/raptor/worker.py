"""The Raptor worker that runs scalems function calls.

RP ships a task's return value back to the master with msgpack. A value
msgpack cannot encode (a ``set``, any custom object) kills the worker's result
thread without a trace on the client, and every later task hangs. So the
worker never returns user values: it returns the *text* of the
:mod:`scalems.call` result record, which already carries the value or the
exception, pickled.

Importing this module in a worker (RP imports it from the file the master
writes) also makes the worker mark the calls it holds, for the master's pool
(:mod:`.pool`): ``<uid>.held`` as soon as RP's task puller receives calls from
the master's queue (all of a bulk at once), renamed ``<uid>.run`` once a rank
is free to run it. The hooks wrap RP 1.103's ``radical.utils.zmq.Getter.get_nowait``
(for the ``raptor_tasks`` channel only) and
``radical.pilot.raptor.worker_mpi._Resources._alloc`` (the one place a pulled
call passes before it runs). Outside a worker nothing is marked.
"""

from __future__ import annotations

__all__ = ("ScaleMSWorker", "run_work_item")

import logging
import os
import typing

import radical.pilot as rp

from .config import ScalemsRaptorWorkItem
from .pool import MARKS_ENV

logger = logging.getLogger(__name__)


def _mark(path: str, owner: str) -> None:
    with open(path, "w") as fh:
        fh.write(owner)


def _install_marks() -> bool:
    """In a worker started by a scalems master: mark held and running calls (see the module docstring)."""
    directory = os.environ.get(MARKS_ENV)
    owner = os.environ.get("RP_TASK_ID")
    if not directory or not owner:
        return False
    try:
        from radical.pilot.raptor import worker_mpi
    except ImportError:  # pragma: no cover - depends on the RP version
        worker_mpi = None
    import radical.utils as ru

    resources = getattr(worker_mpi, "_Resources", None)
    original = getattr(resources, "_alloc", None)
    getter = getattr(getattr(ru, "zmq", None), "Getter", None)
    original_get = getattr(getter, "get_nowait", None)
    if original is None or original_get is None:
        logger.warning("This RP has no _Resources._alloc or Getter.get_nowait; calls of this worker are not marked.")
        return False
    if getattr(original, "_scalems_marks", False):
        return True

    def get_nowait(self, *args, **kwargs):
        tasks = original_get(self, *args, **kwargs)
        if tasks and getattr(self, "channel", None) == "raptor_tasks":
            for task in tasks if isinstance(tasks, list) else [tasks]:
                if isinstance(task, dict) and "uid" in task:
                    _mark(os.path.join(directory, f"{task['uid']}.held"), owner)
        return tasks

    def _alloc(self, task):
        uid = task["uid"]
        held = os.path.join(directory, f"{uid}.held")
        if not os.path.exists(held):
            _mark(held, owner)
        ranks = original(self, task)
        os.replace(held, os.path.join(directory, f"{uid}.run"))
        return ranks

    _alloc._scalems_marks = True
    resources._alloc = _alloc
    getter.get_nowait = get_nowait
    return True


_install_marks()


def run_work_item(work_item: typing.Mapping) -> str:
    """Run one work item in this process; the body of :meth:`ScaleMSWorker.run_in_worker`.

    Tasks run on one rank; a function that wants a communicator
    (``comm_arg_name`` not None) gets ``MPI.COMM_SELF``.

    Returns:
        The :mod:`scalems.call` result text (never raises for errors of the user function).
    """
    comm = None
    if work_item.get("comm_arg_name") is not None:
        from mpi4py import MPI

        comm = MPI.COMM_SELF
    import scalems.call

    return scalems.call.execute(work_item["call"], comm=comm)


class ScaleMSWorker(rp.raptor.MPIWorker):
    """Raptor MPI worker whose TASK_FUNCTION entry point is :meth:`run_in_worker`.

    The master rewrites scalems work into tasks with ``function="run_in_worker"``
    and the work item as keyword argument; RP resolves that name as a method of
    this class.
    """

    def run_in_worker(self, *, work_item: ScalemsRaptorWorkItem) -> str:
        """Run *work_item*; return the :mod:`scalems.call` result text."""
        return run_work_item(work_item)
