"""The RP backend's budget (scalems.radical.allocation) decides without RP: which job fits, and
how the Raptor pool grows and makes way. The pool here is a plain record of the decisions;
tests/radical/test_raptor_pool.py and tests/slurm/test_slurm_raptor.py run the real one."""

from __future__ import annotations

import pytest

pytest.importorskip("radical.pilot")

from scalems.exceptions import ResourceError  # noqa: E402
from scalems.execution.jobs import Resources  # noqa: E402
from scalems.radical.allocation import CALLS_PER_WORKER, PilotBudget, PilotShape, pilot_shape  # noqa: E402


class Pool:
    """What the budget reads and asks of a RaptorClient."""

    worker_ranks = 1

    def __init__(self, workers=1):
        self.workers = workers
        self.alive = True

    @property
    def cores(self):
        return 1 + self.workers if self.alive else 0

    def resize(self, count):
        self.workers = count

    def stop_soon(self):
        self.alive = False


ONE = Resources()


def test_a_job_larger_than_the_pilot_is_named_with_the_remedy():
    budget = PilotBudget(PilotShape(cores=2))
    with pytest.raises(ResourceError) as info:
        budget.check_fits("three", Resources(ranks=3))
    assert str(info.value).startswith("Task 'three' needs 3 cores but the pilot has only 2; it could never run.")
    assert "--pilot-option cores=N" in str(info.value)
    assert "GPUs" in str(budget.misfit("gpu", Resources(gpus_per_rank=1)))
    budget.check_fits("two", Resources(ranks=2))
    wide = PilotBudget(PilotShape(cores=8, cores_per_node=4))
    assert "one node" in str(wide.misfit("fat", Resources(cores_per_rank=6)))
    assert PilotBudget().misfit("anything", Resources(ranks=99)) is None  # unknown until the pilot is up


def test_function_calls_grow_the_pool_to_all_cores_but_the_masters():
    pool = Pool()
    budget = PilotBudget()
    budget.set_pilot(PilotShape(cores=4), pool)
    assert budget.try_acquire("function", ONE) and pool.workers == 1  # one call: one worker is enough
    assert budget.try_acquire("function", ONE) and pool.workers == 2
    admitted = 2
    while budget.try_acquire("function", ONE):
        admitted += 1
    assert pool.workers == 3 and admitted == 3 * CALLS_PER_WORKER
    for _ in range(admitted):
        budget.release("function", ONE)
    assert budget.raptor_calls == 0 and budget.free_cores() == 0


def test_the_pool_grows_only_into_cores_no_program_was_given():
    pool = Pool()
    budget = PilotBudget()
    budget.set_pilot(PilotShape(cores=4), pool)
    assert budget.try_acquire("executable", Resources(ranks=2)) and pool.workers == 1
    assert budget.try_acquire("function", ONE) and budget.try_acquire("function", ONE)
    assert pool.workers == 1
    budget.release("executable", Resources(ranks=2))
    assert pool.workers == 2  # the waiting call gets a worker once the program has left


def test_executables_shrink_the_pool_or_stop_it():
    pool = Pool(workers=3)
    budget = PilotBudget()
    budget.set_pilot(PilotShape(cores=4), pool)
    assert budget.try_acquire("executable", ONE) and pool.workers == 2
    # Fits beside the pool: admitted (RP queues it until a core is free); the pool keeps its size.
    assert budget.try_acquire("executable", ONE) and pool.workers == 2
    assert budget.try_acquire("executable", Resources(ranks=3)) and pool.workers == 0 and pool.alive
    # Needs the master's core too: the pool stops.
    assert budget.try_acquire("executable", Resources(ranks=4)) and not pool.alive
    # From then on function calls are tasks of their own, counted in cores.
    assert budget.try_acquire("function", ONE) and budget.cores_in_use == 1 + 1 + 3 + 4 + 1
    assert budget.raptor_calls == 0


def test_a_call_never_waits_behind_programs_in_an_emptied_pool():
    pool = Pool(workers=1)
    budget = PilotBudget()
    budget.set_pilot(PilotShape(cores=2), pool)
    assert budget.try_acquire("executable", ONE) and pool.workers == 0 and pool.alive
    # No core for a worker while the program runs: the pool stops, the call is a task of its own.
    assert budget.try_acquire("function", ONE) and not pool.alive
    assert budget.cores_in_use == 2 and budget.raptor_calls == 0
    budget.release("function", ONE)
    assert budget.cores_in_use == 1


def test_calls_held_by_an_emptied_pool_get_a_worker_back():
    pool = Pool(workers=1)
    budget = PilotBudget()
    budget.set_pilot(PilotShape(cores=2), pool)
    assert budget.try_acquire("function", ONE)
    assert budget.try_acquire("executable", ONE) and pool.workers == 0
    # While the call waits for a worker, further programs wait too (they would keep it waiting).
    assert not budget.try_acquire("executable", ONE)
    budget.release("executable", ONE)
    assert pool.workers == 1


def test_pilot_shape_prefers_what_the_agent_reports():
    class Pilot:
        resource_details = {"node_list": [["n0", "n0"]], "cores_per_node": 8, "gpus_per_node": 0}

    assert pilot_shape(Pilot(), {"cores": 4}) == PilotShape(cores=4, gpus=0, cores_per_node=8)
    assert pilot_shape(Pilot(), {"nodes": 1}) == PilotShape(cores=8, gpus=0, cores_per_node=8)
    Pilot.resource_details = None
    assert pilot_shape(Pilot(), {"cores": 2}) == PilotShape(cores=2)
    assert pilot_shape(Pilot(), {"nodes": 1}) is None
