"""The in-memory backend's own behaviour: stand-in programs, and what it refuses to pretend."""

import os
import pathlib
import threading

import pytest

import scalems
import scalems.memory
from scalems.exceptions import ConfigurationError, TaskFailedError


def fake_grompp(run):
    """A stand-in that writes what the real program would, from its input."""
    source = pathlib.Path(run.argv[run.argv.index("-f") + 1])
    run.path(run.argv[run.argv.index("-o") + 1]).write_text("tpr of " + source.read_text())
    run.stdout.write(f"pid {os.getpid()} thread {threading.current_thread().name}\n")
    return 0


def test_stand_in_programs_run_in_this_process_and_feed_other_tasks(tmp_path):
    mdp = tmp_path / "md.mdp"
    mdp.write_text("nsteps = 10\n")
    with scalems.memory.workflow(directory=tmp_path / "work", programs={"gmx": fake_grompp}):
        grompp = scalems.executable(["gmx", "grompp", "-f", mdp, "-o", scalems.output_file("topol.tpr")])
        copy = scalems.executable(["cat", grompp.file["topol.tpr"]])
        result = grompp.result(timeout=30)
        assert pathlib.Path(copy.result(timeout=30).stdout).read_text() == "tpr of nsteps = 10\n"
    assert f"pid {os.getpid()} thread scalems-memory" in pathlib.Path(result.stdout).read_text()


def test_rerun_is_served_from_the_record(tmp_path):
    launches = []

    def counted(run):
        launches.append(run.argv)
        run.stdout.write("done\n")
        return 0

    for _ in range(2):
        with scalems.memory.workflow(directory=tmp_path / "work", programs={"sim": counted}) as workflow:
            task = scalems.executable(["sim", "--steps", "5"])
            assert pathlib.Path(task.result(timeout=30).stdout).read_text() == "done\n"
    assert launches == [["sim", "--steps", "5"]]
    assert task.from_cache and not workflow.backend_started


def test_failures_name_the_program_and_the_cause(tmp_path):
    def broken(run):
        raise RuntimeError("bad input deck")

    with scalems.memory.workflow(directory=tmp_path / "work", programs={"broken": broken, "seven": lambda run: 7}):
        raised = scalems.executable(["broken"])
        status = scalems.executable(["seven"])
        unknown = scalems.executable(["lmp", "-in", "in.lj"])
        mpi = scalems.function_task(len, args=("x",), resources={"ranks": 2})
        with pytest.raises(TaskFailedError, match="stand-in for 'broken' raised RuntimeError: bad input deck"):
            raised.result(timeout=30)
        with pytest.raises(TaskFailedError) as failure:
            status.result(timeout=30)
        assert failure.value.exitcode == 7
        with pytest.raises(TaskFailedError, match="'lmp' was not found among the in-memory backend's programs"):
            unknown.result(timeout=30)
        with pytest.raises(TaskFailedError, match="runs no MPI"):
            mpi.result(timeout=30)


def test_configuration_is_checked():
    with pytest.raises(ConfigurationError, match="cores"):
        scalems.memory.MemoryConfiguration(cores=0)
    with pytest.raises(ConfigurationError, match="'gmx' must be a callable"):
        scalems.memory.MemoryConfiguration(programs={"gmx": "/usr/bin/gmx"})
