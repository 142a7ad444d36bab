"""The Raptor worker that runs scalems function calls.

RP ships a task's return value back to the master with msgpack. A value
msgpack cannot encode (a ``set``, any custom object) kills the worker's result
thread without a trace on the client, and every later task hangs. So the
worker never returns user values: it returns the *text* of the
:mod:`scalems.call` result record, which already carries the value or the
exception, pickled.
"""

from __future__ import annotations

__all__ = ("ScaleMSWorker", "run_work_item")

import typing

import radical.pilot as rp

from .config import ScalemsRaptorWorkItem


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
