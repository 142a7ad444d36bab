"""The pilot's cores as the RP backend's budget, shared by executables and the Raptor pool.

RP's agent scheduler queues a task until cores are free, and gives every task
at least one core. A Raptor master and its workers hold their cores for as long
as they run, so on a small pilot they could keep an executable waiting
forever. :class:`PilotBudget` is the backend's limiter
(:mod:`scalems.execution.limits`): it knows the pilot's cores and GPUs once the
pilot is active and admits

* executables and plain function tasks (``python -m scalems.call``) when
  they fit beside the pool, as many as come (RP's scheduler queues them until
  their cores are free, as without Raptor); one that does not fit makes room
  by shrinking the pool (the master retires idle workers) or, when it needs
  more than all cores but the master's, by stopping the pool: its unstarted
  calls, and all later ones, then run as plain tasks;
* single-rank function calls for Raptor against *worker slots*
  (:data:`CALLS_PER_WORKER` per worker), growing the pool by one worker,
  up to ``cores - 1``, whenever there are more calls than workers and a core
  is neither held by the pool nor by an admitted job. A call that finds the
  pool emptied for programs which still hold the cores stops the pool rather
  than wait behind them: it runs as a task of its own.

A job that can never fit the pilot is admitted at once and fails in the
backend with a :class:`~scalems.exceptions.ResourceError` (:meth:`PilotBudget.misfit`).
"""

from __future__ import annotations

__all__ = ("PilotBudget", "PilotShape", "pilot_shape", "CALLS_PER_WORKER")

import collections
import logging
import typing

from scalems.exceptions import ResourceError
from scalems.execution.jobs import Resources

logger = logging.getLogger(__name__)

#: Raptor calls admitted per worker (at least one worker's worth, also while the pool is emptied
#: for a program): the master queues them and hands each worker one at a time.
CALLS_PER_WORKER = 64


class PilotShape(typing.NamedTuple):
    """Cores and GPUs of an active pilot."""

    cores: int
    gpus: int = 0
    cores_per_node: typing.Optional[int] = None


def pilot_shape(pilot, description: typing.Mapping) -> typing.Optional[PilotShape]:
    """What the agent of an active *pilot* schedules on (None if RP does not say).

    From ``pilot.resource_details`` (RP's resource manager: nodes times cores per
    node, which for ``local.slurm`` come from ``SLURM_CPUS_ON_NODE``), no more than
    the pilot asked for (``cores`` of *description*), since RP fakes whole nodes
    on ``local.localhost``.
    """
    details = getattr(pilot, "resource_details", None) or {}
    nodes = len(details.get("node_list") or ())
    per_node = int(details.get("cores_per_node") or 0)
    gpus_per_node = int(details.get("gpus_per_node") or 0)
    requested = int(description.get("cores") or 0)
    requested_gpus = int(description.get("gpus") or 0)
    if nodes and per_node:
        cores = nodes * per_node
        gpus = nodes * gpus_per_node
        if requested:
            cores = min(cores, requested)
        if requested_gpus:
            gpus = min(gpus, requested_gpus)
        return PilotShape(cores=cores, gpus=gpus, cores_per_node=per_node)
    if requested:
        return PilotShape(cores=requested, gpus=requested_gpus)
    return None


class PilotBudget:
    """The RP backend's limiter: cores of executables, plain tasks and the Raptor pool.

    Used on the dispatcher's event loop only. Until the pilot is active
    (:meth:`set_pilot`) it knows only the cores the user asked for, if any.

    Attributes:
        shape: the pilot's cores and GPUs, once known.
        pool: the Raptor client whose workers this budget sizes, or None.
    """

    def __init__(self, requested: typing.Optional[PilotShape] = None):
        self.shape: typing.Optional[PilotShape] = requested
        self.pool = None
        self.cores_in_use = 0
        self.gpus_in_use = 0
        self.raptor_calls = 0
        # (kind, resources) -> how each admitted job of that shape was counted, oldest first
        self._routes: typing.Dict[tuple, typing.Deque[str]] = collections.defaultdict(collections.deque)

    @property
    def total(self) -> typing.Optional[Resources]:
        shape = self.shape
        return None if shape is None else Resources(ranks=1, cores_per_rank=shape.cores, gpus_per_rank=shape.gpus)

    def set_pilot(self, shape: PilotShape, pool=None) -> None:
        self.shape = shape
        self.pool = pool
        logger.info(
            "Pilot budget: %d core(s), %d GPU(s)%s.",
            shape.cores,
            shape.gpus,
            "; the Raptor master and its workers are counted in it" if pool is not None else "",
        )

    # -- fitting -------------------------------------------------------------------------------
    def misfit(self, label: str, resources: Resources) -> typing.Optional[ResourceError]:
        """Why a job of *resources* could never run on this pilot, or None."""
        shape = self.shape
        if shape is None:
            return None
        hint = "Ask for a larger pilot, e.g. --pilot-option cores=N (and gpus=N), or reduce the task's resources."
        if resources.cores > shape.cores:
            return _misfit(label, resources.cores, shape.cores, "cores", hint)
        if resources.gpus > shape.gpus:
            return _misfit(label, resources.gpus, shape.gpus, "GPUs", hint)
        per_node = shape.cores_per_node
        if per_node and resources.cores_per_rank > per_node:
            return _misfit(label, resources.cores_per_rank, per_node, "cores on one node (per rank)", hint)
        return None

    def check_fits(self, label: str, resources: Resources) -> None:
        error = self.misfit(label, resources)
        if error is not None:
            raise error

    # -- admission -----------------------------------------------------------------------------
    def _raptor_eligible(self, kind: str, resources: Resources) -> bool:
        pool = self.pool
        return (
            kind == "function"
            and pool is not None
            and pool.alive
            and resources.ranks <= pool.worker_ranks
            and resources.cores_per_rank <= 1
            and not resources.gpus
        )

    def free_cores(self) -> int:
        """Cores neither admitted jobs nor the Raptor pool hold (negative while RP queues admitted jobs;
        a stopping pool counts as gone: RP starts what is admitted once it has left)."""
        return self.shape.cores - self.cores_in_use - self._pool_cores()

    def _pool_cores(self) -> int:
        pool = self.pool
        return pool.cores if pool is not None and pool.alive else 0

    def try_acquire(self, kind: str, resources: Resources) -> bool:
        if self.shape is None:
            return True
        key = (kind, resources)
        if self.misfit("", resources) is not None:
            self._routes[key].append("none")  # admitted only to fail at once (see misfit)
            return True
        if self._raptor_eligible(kind, resources):
            admitted = self._admit_call()
            if admitted is not None:
                if admitted:
                    self._routes[key].append("raptor")
                return admitted
            # The pool stopped: the call is a task of its own, counted in cores.
        if not self._make_room(resources):
            return False
        self.cores_in_use += resources.cores
        self.gpus_in_use += resources.gpus
        self._routes[key].append("cores")
        return True

    def _admit_call(self) -> typing.Optional[bool]:
        """Admit a call for the pool (True), not yet (False), or stop the pool (None): see below."""
        pool = self.pool
        if self.raptor_calls >= pool.workers:
            self._grow()
        if pool.workers == 0 and self.cores_in_use > 0:
            # The pool was emptied for programs that still hold the cores a worker would need:
            # the call would wait behind them. Stop the pool; the call runs as a task of its own.
            logger.warning(
                "Programs hold the cores a Raptor worker would need: stopping the Raptor pool; function calls "
                "run as separate RP tasks from now on (a larger pilot keeps both: --pilot-option cores=N)."
            )
            pool.stop_soon()
            return None
        if self.raptor_calls >= max(1, pool.workers) * CALLS_PER_WORKER:
            return False
        self.raptor_calls += 1
        return True

    def _grow(self) -> None:
        """One more worker, if calls wait for one, a core is free and the master keeps the last core."""
        pool = self.pool
        if (
            pool.alive
            and self.raptor_calls >= pool.workers
            and pool.workers < self.shape.cores - 1
            and self.free_cores() >= pool.worker_ranks
        ):
            pool.resize(pool.workers + 1)
            logger.info("Raptor pool grows to %d worker(s) (calls wait, a core is free).", pool.workers)

    def _make_room(self, resources: Resources) -> bool:
        """Whether a job of *resources* may go to RP now, shrinking or stopping the Raptor pool if needed.

        Jobs that fit beside the pool go at once, as many as come (RP queues them until
        cores are free, as it does without scalems): only the pool's cores are never given
        back by RP, so only they are taken back here.
        """
        if resources.gpus > self.shape.gpus:
            return False
        need = resources.cores
        pool = self.pool
        if pool is not None and pool.alive and pool.workers == 0 and self.raptor_calls > 0:
            self._grow()
            if pool.workers == 0 and self.cores_in_use > 0:
                # Calls wait in the master for a worker: this job waits until running ones end
                # and the calls got one, or a stream of programs could keep them waiting for ever.
                return False
        room = self.shape.cores - self._pool_cores()
        if need <= room:
            return True
        short = need - room
        spare = pool.workers * pool.worker_ranks
        if short <= spare:
            workers = pool.workers - -(-short // pool.worker_ranks)
            logger.info("Raptor pool shrinks to %d worker(s) to make room for a task of %d core(s).", workers, need)
            pool.resize(workers)
            return True
        # It can never run beside the master (misfit() excluded more than all cores).
        logger.warning(
            "A task needs %d of the pilot's %d core(s), leaving none for the Raptor master: stopping the "
            "Raptor pool; function calls run as separate RP tasks from now on.",
            need,
            self.shape.cores,
        )
        pool.stop_soon()
        return True

    def release(self, kind: str, resources: Resources) -> None:
        if self.shape is None:
            return
        routes = self._routes.get((kind, resources))
        route = routes.popleft() if routes else "cores"
        if route == "raptor":
            self.raptor_calls -= 1
        elif route == "cores":
            self.cores_in_use -= resources.cores
            self.gpus_in_use -= resources.gpus
        if self.pool is not None and self.raptor_calls > self.pool.workers:
            self._grow()  # calls the master holds get workers back once a program has left


def _misfit(label: str, requested: int, available: int, what: str, hint: str) -> ResourceError:
    error = ResourceError(label, requested, available, what=what)
    error.args = (f"Task {label!r} needs {requested} {what} but the pilot has only {available}; it could never run. {hint}",)
    return error
