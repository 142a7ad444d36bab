"""The public surface: names, light imports, exception hierarchy."""

import argparse
import inspect
import subprocess
import sys

import pytest

import scalems
import scalems.exceptions
import scalems.local

DOCUMENTED = {
    "__version__", "app", "ScriptEntryPoint", "executable", "submit", "function_task", "output_file",
    "FileReference", "Task", "Ensemble", "wait", "as_completed", "FIRST_COMPLETED", "FIRST_EXCEPTION",
    "ALL_COMPLETED", "get_scope",
}


def test_all_is_exactly_the_documented_api():
    assert set(scalems.__all__) == DOCUMENTED
    for name in scalems.__all__:
        assert hasattr(scalems, name), name


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'exectuable'"):
        scalems.exectuable  # noqa: B018 (a typo a user could make)


def test_call_runners_do_not_load_the_workflow_machinery():
    """Warm workers and MPI ranks import scalems.call only: no asyncio, no store."""
    code = "import sys, scalems.call; print(sorted(m for m in ('asyncio', 'sqlite3', 'scalems.workflow') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_import_scalems_needs_neither_radical_nor_mpi():
    code = "import sys, scalems, scalems.local; print(sorted(m for m in sys.modules if m.split('.')[0] in ('radical', 'mpi4py')))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_execution_module_attributes():
    assert isinstance(scalems.local.parser, argparse.ArgumentParser)
    assert callable(scalems.local.workflow_manager) and callable(scalems.local.executor_factory)
    assert "directory" in inspect.signature(scalems.local.workflow_manager).parameters


def test_every_exception_derives_from_scalems_error():
    for name in scalems.exceptions.__all__:
        error = getattr(scalems.exceptions, name)
        assert issubclass(error, scalems.exceptions.ScaleMSError), name
    assert issubclass(scalems.exceptions.MissingImplementationError, NotImplementedError)


def test_errors_name_their_cause():
    from scalems.exceptions import ResourceError, StoreLockedError, TaskFailedError, UpstreamFailedError

    assert "needs 8 cores" in str(ResourceError("md-3", 8, 2)) and "md-3" in str(ResourceError("md-3", 8, 2))
    failed = TaskFailedError("grompp", exitcode=1, stderr="/w/grompp/stderr")
    assert "'grompp'" in str(failed) and "/w/grompp/stderr" in str(failed) and "exit status 1" in str(failed)
    assert "'grompp'" in str(UpstreamFailedError("mdrun", upstream="grompp"))
    assert "pid 42" in str(StoreLockedError("/w", "pid 42 on host"))


def test_result_timeout_and_repr(tmp_path):
    import concurrent.futures

    with scalems.local.workflow(directory=tmp_path, cores=1, progress=False):
        slow = scalems.executable(["sleep", "0.5"], label="slow")
        try:
            slow.result(timeout=0.01)
        except concurrent.futures.TimeoutError:
            pass
        else:
            raise AssertionError("result(timeout=0.01) returned before the task could finish")
        assert slow.result(timeout=60).exitcode == 0
        assert repr(slow) == "<Task slow state=done exitcode=0>"
