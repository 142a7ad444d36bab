"""The Raptor worker that runs scalems function calls.

RP ships a task's return value back to the master with msgpack. A value
msgpack cannot encode (a ``set``, any custom object) kills the worker's result
thread without a trace on the client, and every later task hangs. So the
worker never returns user values: for a scalems call it returns the *text* of
the :mod:`scalems.call` result record, which already carries the value or
the exception, pickled.
"""

from __future__ import annotations

__all__ = ("ScaleMSWorker", "run_work_item", "decode_rank_result")

import importlib
import json
import logging
import typing

import radical.pilot as rp

from .config import ScalemsRaptorWorkItem

logger = logging.getLogger(__name__)

# Key marking the per-rank envelope returned for MPI tasks.
_RANK_KEY = "scalems_rank"


def _msgpack_checked(value, what: str):
    """Refuse values RP cannot ship, here, where the failure is still attributable to one task."""
    import msgpack

    try:
        msgpack.packb(value, use_bin_type=True)
    except Exception as err:  # noqa: BLE001
        raise TypeError(
            f"{what} returned a {type(value).__qualname__}, which RADICAL-Pilot cannot transport "
            f"({type(err).__name__}: {err}); use a scalems.call record (which pickles values) instead."
        ) from None
    return value


def _needs_comm(work_item: typing.Mapping) -> bool:
    return work_item.get("comm_arg_name") is not None or int(work_item.get("ranks", 1) or 1) > 1


def run_work_item(work_item: typing.Mapping, comm=None):
    """Run one work item in this process; the body of :meth:`ScaleMSWorker.run_in_worker`.

    A function that wants a communicator but runs on one rank gets
    ``MPI.COMM_SELF``, so ``comm_arg`` does not force ``ranks > 1``.

    Returns:
        For a *call* item: the :mod:`scalems.call` result text (never raises for
        errors of the user function). On more than one rank, a JSON envelope
        ``{"scalems_rank": r, "size": n, "result": text}``, because RP collects
        per-rank values in arrival order, not rank order.
        For a *module*/*func* item: the function's return value, which must be
        msgpack-encodable (checked here, so a bad value fails only its task).
    """
    if comm is None and _needs_comm(work_item):
        from mpi4py import MPI

        comm = MPI.COMM_SELF
    if "call" in work_item:
        import scalems.call

        text = scalems.call.execute(work_item["call"], comm=comm)
        if comm is not None and comm.Get_size() > 1:
            return json.dumps({_RANK_KEY: comm.Get_rank(), "size": comm.Get_size(), "result": text})
        return text

    module = importlib.import_module(work_item["module"])
    func = getattr(module, work_item["func"])
    args = list(work_item.get("args") or ())
    kwargs = dict(work_item.get("kwargs") or {})
    comm_arg_name = work_item.get("comm_arg_name")
    if comm_arg_name is not None:
        if comm_arg_name:
            kwargs[comm_arg_name] = comm
        else:
            args.insert(0, comm)
    name = f"{work_item['module']}.{work_item['func']}"
    return _msgpack_checked(func(*args, **kwargs), name)


def decode_rank_result(value) -> typing.Tuple[typing.Optional[int], typing.Any]:
    """Split what :func:`run_work_item` returned on one rank into (rank or None, result)."""
    if isinstance(value, str) and value.startswith("{") and _RANK_KEY in value[:32]:
        try:
            envelope = json.loads(value)
        except ValueError:
            return None, value
        if isinstance(envelope, dict) and _RANK_KEY in envelope:
            return int(envelope[_RANK_KEY]), envelope.get("result")
    return None, value


class ScaleMSWorker(rp.raptor.MPIWorker):
    """Raptor MPI worker whose TASK_FUNCTION entry point is :meth:`run_in_worker`.

    The master rewrites scalems work into tasks with ``function="run_in_worker"``;
    RP resolves that name as a method of this class, and for a task with
    ``ranks > 1`` inserts the task's private communicator as the first
    positional argument.
    """

    def run_in_worker(self, *positional, work_item: ScalemsRaptorWorkItem = None, comm=None):
        """Run *work_item*, handing it *comm* as its ``comm_arg_name`` says.

        Positional arguments are accepted because RP passes the communicator
        positionally (and callers may pass the work item positionally).
        """
        for value in positional:
            if isinstance(value, typing.Mapping) and work_item is None:
                work_item = value
            elif comm is None:
                comm = value
            else:
                raise TypeError(f"run_in_worker got an unexpected positional argument {value!r}")
        if work_item is None:
            raise TypeError("run_in_worker needs a work_item")
        return run_work_item(work_item, comm=comm)
