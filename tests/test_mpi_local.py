"""MPI tasks on the local backend, with a real mpiexec (pip install 'scalems[mpi]')."""

import os
import pathlib
import re
import shutil
import sys

import pytest

import scalems
import scalems.local

pytestmark = pytest.mark.mpi

mpi4py = pytest.importorskip("mpi4py", reason="MPI tests need mpi4py (pip install 'scalems[mpi]')")
MPIEXEC = os.path.join(os.path.dirname(sys.executable), "mpiexec")
if not os.access(MPIEXEC, os.X_OK) and shutil.which("mpiexec") is None:
    pytest.skip("MPI tests need an mpiexec launcher (pip install mpich)", allow_module_level=True)


def rank_and_size(label, comm=None):
    return label, comm.Get_rank(), comm.Get_size()


def first_positional(comm, value):
    return comm.allreduce(value)


def test_executable_with_two_ranks_runs_under_mpiexec(tmp_path):
    code = "from mpi4py import MPI; c = MPI.COMM_WORLD; print(f'rank {c.rank} of {c.size}')"
    with scalems.local.workflow(directory=tmp_path, cores=2, progress=False):
        task = scalems.executable([sys.executable, "-c", code], resources={"ranks": 2}, label="mpi")
        text = pathlib.Path(task.result(timeout=120).stdout).read_text()
    # mpiexec merges the ranks' output in arbitrary chunks (a line may be cut by another rank's).
    assert sorted(re.findall(r"rank (\d+) of (\d+)", text)) == [("0", "2"), ("1", "2")], text


def test_function_with_two_ranks_gets_a_communicator(tmp_path):
    with scalems.local.workflow(directory=tmp_path, cores=2, progress=False):
        task = scalems.function_task(rank_and_size, args=("x",), resources={"ranks": 2})
        assert task.result(timeout=120) == [("x", 0, 2), ("x", 1, 2)]
        summed = scalems.function_task(first_positional, args=(5,), resources={"ranks": 2}, comm_arg="")
        assert summed.result(timeout=120) == [10, 10]


def drives_mpi_itself(label):
    """A function that uses MPI on its own (an engine's Python driver): it takes no communicator."""
    from mpi4py import MPI

    return label, MPI.COMM_WORLD.Get_rank(), MPI.COMM_WORLD.Get_size()


def test_function_with_comm_arg_false_runs_on_every_rank_without_a_communicator(tmp_path):
    with scalems.local.workflow(directory=tmp_path, cores=2, progress=False):
        task = scalems.function_task(drives_mpi_itself, args=("y",), resources={"ranks": 2}, comm_arg=False)
        assert task.result(timeout=120) == [("y", 0, 2), ("y", 1, 2)]
