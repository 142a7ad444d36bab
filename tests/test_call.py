"""scalems.call: a function call survives the trip to another process and back."""

import enum
import json
import math
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap

import pytest

import scalems.call
from scalems.call import (
    Call,
    CallResult,
    deserialize_call,
    deserialize_result,
    execute,
    main,
    serialize_call,
    serialize_result,
)
from scalems.exceptions import APIError, ConfigurationError, ProtocolError

TIMEOUT = 60


# Functions and types defined at module level are pickled by reference to this module.
def scale(values, *, factor=2):
    return [v * factor for v in values]


class Box:
    def __init__(self, content):
        self.content = content


class Flag(enum.IntEnum):
    A = 1
    B = 2


class DetailedError(Exception):
    def __init__(self, message, code=0):
        super().__init__(message)
        self.code = code


def unpicklable():
    """Even dill cannot pickle a generator."""
    return (i for i in range(3))


class HoldsGenerator(Exception):
    """Cannot be pickled: carries a generator."""

    def __init__(self, message):
        super().__init__(message)
        self.source = unpicklable()


class TwoArgError(Exception):
    """Pickles, but cannot be rebuilt from its args."""

    def __init__(self, path, reason):
        super().__init__(f"{path}: {reason}")


def raise_detailed(code):
    raise DetailedError(f"code {code} is bad", code=code)


def run_cli(*args, cwd=None, env=None, mpi_ranks=None):
    command = [sys.executable, "-m", "scalems.call", *map(str, args)]
    if mpi_ranks:
        command = [_mpiexec(), "-n", str(mpi_ranks), *command]
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )


def _mpiexec():
    return shutil.which("mpiexec", path=os.path.dirname(sys.executable))


def round_trip(func, **kwargs) -> CallResult:
    return deserialize_result(execute(serialize_call(func, **kwargs)))


# --- round trips in this process -------------------------------------------------------------


def test_importable_function_is_stored_by_reference():
    record = json.loads(serialize_call(math.comb, args=(5, 2)))
    assert deserialize_call(json.dumps(record)).func is math.comb
    assert round_trip(math.comb, args=(5, 2)).return_value == 10


def test_module_function_with_kwargs():
    call = deserialize_call(serialize_call(scale, args=([1, 2],), kwargs={"factor": 3}))
    assert call.func is scale
    assert call.args == ([1, 2],)
    assert call.kwargs == {"factor": 3}
    result = round_trip(scale, args=([1, 2],), kwargs={"factor": 3})
    assert result.exception is None
    assert result.return_value == [3, 6]


def test_closure_and_lambda():
    offset = 10

    def add_offset(x):
        return x + offset

    assert round_trip(add_offset, args=(5,)).return_value == 15
    assert round_trip(lambda x, y: x * y, args=(6, 7)).return_value == 42


def test_set_and_custom_class_values():
    result = round_trip(lambda items: ({*items}, Box(sorted(items))), args=({3, 1, 2},))
    returned_set, box = result.return_value
    assert returned_set == {1, 2, 3}
    assert isinstance(box, Box)
    assert box.content == [1, 2, 3]


@pytest.mark.parametrize(
    "value",
    [
        (1, 2.5, "text", b"bytes", None, True, 3j),
        {"nested": [(1, 2), {3, 4}, frozenset({5})], 7: [{"deep": [1.0]}]},
        list(range(10_000)),
    ],
    ids=["scalars", "nested", "long-list"],
)
def test_builtin_data_round_trips_with_exact_types(value):
    result = round_trip(lambda v: v, args=(value,))
    assert result.exception is None
    assert result.return_value == value and type(result.return_value) is type(value)


def test_subclass_of_builtin_keeps_its_class():
    """Only exact built-in types take the fast standard-pickle path; subclasses go through dill."""
    result = round_trip(lambda: Flag.B)
    assert result.return_value is Flag.B


def test_none_return_value():
    result = round_trip(lambda: None)
    assert result.exception is None
    assert result.return_value is None


# --- errors ---------------------------------------------------------------------------------


def test_exception_round_trip_keeps_type_message_and_traceback():
    result = round_trip(raise_detailed, args=(7,))
    assert type(result.exception_object) is DetailedError
    assert str(result.exception_object) == "code 7 is bad"
    assert result.exception_object.code == 7
    assert result.exception == "DetailedError('code 7 is bad')"
    assert result.return_value is None
    assert "Traceback" in result.traceback
    assert "in raise_detailed" in result.traceback
    assert "DetailedError: code 7 is bad" in result.traceback


def test_unpicklable_exception_becomes_runtime_error():
    def fail():
        raise HoldsGenerator("locked out")

    result = round_trip(fail)
    assert type(result.exception_object) is RuntimeError
    assert "HoldsGenerator" in str(result.exception_object)
    assert "locked out" in str(result.exception_object)
    assert result.exception == "HoldsGenerator('locked out')"  # the text names what was raised
    assert "HoldsGenerator: locked out" in result.traceback


def test_exception_that_cannot_be_rebuilt_becomes_runtime_error():
    def fail():
        raise TwoArgError("/data/x", "missing")

    result = round_trip(fail)
    assert type(result.exception_object) is RuntimeError
    assert "/data/x: missing" in str(result.exception_object)
    assert result.exception == "TwoArgError('/data/x: missing')"


def test_unpicklable_return_value_is_reported():
    def make_generator():
        return unpicklable()

    text = execute(serialize_call(make_generator))
    result = deserialize_result(text)
    assert result.return_value is None
    assert isinstance(result.exception_object, TypeError)
    assert result.exception.startswith("TypeError(")
    message = str(result.exception_object)
    assert "make_generator" in message
    assert "could not be serialized" in message
    assert "generator" in message


def test_serialize_result_never_raises_for_bad_payloads():
    result = CallResult(return_value=unpicklable(), exception_object=HoldsGenerator("x"), function="f")
    decoded = deserialize_result(serialize_result(result))
    # The call's own exception wins over the unserializable return value.
    assert type(decoded.exception_object) is RuntimeError
    assert "HoldsGenerator" in str(decoded.exception_object)
    assert decoded.exception == "HoldsGenerator('x')"


def test_system_exit_is_captured():
    result = round_trip(lambda: sys.exit(3))
    assert isinstance(result.exception_object, SystemExit)
    assert result.exception_object.code == 3
    assert result.exception == "SystemExit(3)"


def test_serialize_call_rejects_bad_input():
    with pytest.raises(TypeError, match="callable"):
        serialize_call(42)
    with pytest.raises(TypeError, match="Positional argument 1 of .*scale.*cannot be serialized"):
        serialize_call(scale, args=(1, unpicklable()))
    with pytest.raises(ConfigurationError, match="comm_arg"):
        serialize_call(scale, comm_arg="not a name")
    with pytest.raises(ConfigurationError, match="reserved for the MPI communicator"):
        serialize_call(scale, kwargs={"comm": 1}, requirements={"ranks": 2})
    with pytest.raises(ConfigurationError, match="ranks"):
        serialize_call(scale, requirements={"ranks": 0})


def test_bad_records():
    with pytest.raises(ProtocolError):
        deserialize_call("not json")
    with pytest.raises(ProtocolError, match="func"):
        deserialize_call("{}")
    record = json.loads(serialize_call(scale, args=([1],)))
    record["decoder"] = "pickle"
    with pytest.raises(ProtocolError, match="pickle"):
        deserialize_call(json.dumps(record))
    with pytest.raises(ProtocolError):
        deserialize_result("[1, 2]")
    # execute() is what workers call: a bad record becomes a failed result, not a crash.
    result = deserialize_result(execute("garbage"))
    assert isinstance(result.exception_object, ProtocolError)
    assert result.exception.startswith("ProtocolError(")


# --- communicator and environment -----------------------------------------------------------


class FakeComm:
    """Stands in for an mpi4py communicator where only the passing matters."""


def test_communicator_passing():
    comm = FakeComm()

    def describe(*args, **kwargs):
        return [type(a).__name__ for a in args], sorted(kwargs)

    def run(comm_arg, ranks=1):
        text = serialize_call(describe, args=(1,), comm_arg=comm_arg, requirements={"ranks": ranks})
        return deserialize_result(execute(text, comm=comm)).return_value

    assert run("") == (["FakeComm", "int"], [])
    assert run("mycomm") == (["int"], ["mycomm"])
    assert run(None, ranks=2) == (["int"], ["comm"])
    # A call that takes no communicator does not get one, even from an MPI worker.
    assert run(None) == (["int"], [])


def test_missing_communicator_is_an_error():
    call = deserialize_call(serialize_call(scale, args=([1],), comm_arg="comm"))
    with pytest.raises(APIError, match="communicator"):
        main(call)
    assert "communicator" in str(deserialize_result(execute(serialize_call(scale, comm_arg=""))).exception)


def test_environment_is_applied_and_restored(monkeypatch):
    monkeypatch.delenv("SCALEMS_TEST_VAR", raising=False)
    call = Call(func=lambda: os.environ.get("SCALEMS_TEST_VAR"), environment={"SCALEMS_TEST_VAR": "yes"})
    assert main(call).return_value == "yes"
    assert "SCALEMS_TEST_VAR" not in os.environ


def test_outputs_limit_reported_fields():
    call = Call(func=lambda: 5, outputs=["exception"])
    result = main(call)
    assert result.return_value is None
    assert result.directory is None
    assert main(Call(func=lambda: 5)).directory == pathlib.Path.cwd().as_uri()


# --- other interpreters ---------------------------------------------------------------------

SCRIPT = """
import sys

import scalems.call

OFFSET = 100


class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def compute(point, tags):
    return Point(point.x + OFFSET, fib(point.y)), {tag.upper() for tag in tags}


def make_multiplier(k):
    return lambda x: x * k


def fail(n):
    raise KeyError(f"no entry {n}")


calls = {
    "main": scalems.call.serialize_call(compute, args=(Point(1, 10),), kwargs={"tags": ["a", "b"]}),
    "closure": scalems.call.serialize_call(make_multiplier(3), args=(14,)),
    "lambda": scalems.call.serialize_call(lambda s: s[::-1], args=("abc",)),
    "fail": scalems.call.serialize_call(fail, args=(4,)),
    "nompi": scalems.call.serialize_call(lambda: "mpi4py" in sys.modules),
}
for name, text in calls.items():
    with open(f"{name}.json", "w") as fh:
        fh.write(text)
"""


@pytest.fixture(scope="module")
def script_calls(tmp_path_factory):
    """Call records written by a workflow script run as __main__ in its own interpreter."""
    directory = tmp_path_factory.mktemp("script")
    (directory / "workflow.py").write_text(textwrap.dedent(SCRIPT))
    process = subprocess.run(
        [sys.executable, "workflow.py"],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert process.returncode == 0, process.stderr
    return directory


@pytest.fixture
def elsewhere(tmp_path):
    """A working directory where the workflow script cannot be imported."""
    return tmp_path


def test_main_script_function_runs_in_fresh_interpreter(script_calls, elsewhere):
    out = elsewhere / "out.json"
    process = run_cli(script_calls / "main.json", out, cwd=elsewhere)
    assert process.returncode == 0, process.stderr
    assert process.stderr == ""  # no chatter by default
    result = deserialize_result(out.read_text())
    assert result.exception is None
    point, tags = result.return_value
    assert type(point).__name__ == "Point"
    assert (point.x, point.y) == (101, 55)
    assert tags == {"A", "B"}
    assert result.directory == elsewhere.as_uri()


@pytest.mark.parametrize(("name", "expected"), [("closure", 42), ("lambda", "cba"), ("nompi", False)])
def test_script_closures_and_lambdas(script_calls, elsewhere, name, expected):
    out = elsewhere / "out.json"
    process = run_cli(script_calls / f"{name}.json", out, cwd=elsewhere)
    assert process.returncode == 0, process.stderr
    assert deserialize_result(out.read_text()).return_value == expected


def test_cli_exit_status_1_when_call_raises(script_calls, elsewhere):
    out = elsewhere / "out.json"
    process = run_cli(script_calls / "fail.json", out, cwd=elsewhere)
    assert process.returncode == 1
    assert "KeyError" in process.stderr
    result = deserialize_result(out.read_text())
    assert type(result.exception_object) is KeyError
    assert result.exception_object.args == ("no entry 4",)
    assert result.exception == "KeyError('no entry 4')"
    assert "in fail" in result.traceback


def test_cli_debug_logging_on_request(script_calls, elsewhere):
    env = dict(os.environ, SCALEMS_LOG_LEVEL="DEBUG")
    process = run_cli(script_calls / "lambda.json", elsewhere / "out.json", cwd=elsewhere, env=env)
    assert process.returncode == 0
    assert "DEBUG" in process.stderr


def test_cli_usage_errors(tmp_path):
    process = run_cli()
    assert process.returncode == 2
    assert "usage:" in process.stderr

    missing = tmp_path / "no-such-call.json"
    process = run_cli(missing, tmp_path / "out.json")
    assert process.returncode == 2
    assert str(missing) in process.stderr
    assert "No such file" in process.stderr
    assert not (tmp_path / "out.json").exists()

    not_a_record = tmp_path / "bad.json"
    not_a_record.write_text("{not json")
    process = run_cli(not_a_record, tmp_path / "out.json")
    assert process.returncode == 2
    assert str(not_a_record) in process.stderr


def test_cli_in_process_returns_status(tmp_path, capsys):
    """cli() takes the whole command line, program first, as ``cli(*sys.argv)``."""
    program = "scalems/call/__main__.py"
    assert scalems.call.cli(program, str(tmp_path / "absent.json"), str(tmp_path / "out.json")) == 2
    assert "absent.json" in capsys.readouterr().err
    call_file = tmp_path / "call.json"
    call_file.write_text(serialize_call(math.comb, args=(4, 2)))
    assert scalems.call.cli(program, str(call_file), str(tmp_path / "out.json")) == 0
    assert deserialize_result((tmp_path / "out.json").read_text()).return_value == 6


def test_cli_takes_sys_argv_whole(tmp_path):
    """The form the seed shows: ``cli(*sys.argv)``, program name first."""
    (tmp_path / "call.json").write_text(serialize_call(math.comb, args=(6, 3)))
    done = subprocess.run(
        [sys.executable, "-c", "import sys, scalems.call; sys.exit(scalems.call.cli(*sys.argv))"]
        + ["call.json", "out.json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert deserialize_result((tmp_path / "out.json").read_text()).return_value == 20


def test_function_module_missing_at_execution_site(tmp_path, monkeypatch):
    """A call that cannot be decoded where it runs is a failed call, with the reason in the result."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "only_here.py").write_text("def hello():\n    return 'hi'\n")
    monkeypatch.syspath_prepend(str(package))
    import only_here

    call_file = tmp_path / "call.json"
    call_file.write_text(serialize_call(only_here.hello))
    out = tmp_path / "out.json"
    process = run_cli(call_file, out, cwd=tmp_path)
    assert process.returncode == 1
    result = deserialize_result(out.read_text())
    assert isinstance(result.exception_object, ModuleNotFoundError)
    assert "only_here" in str(result.exception_object)
    assert result.exception.startswith("ModuleNotFoundError(")


# --- MPI ------------------------------------------------------------------------------------


@pytest.fixture
def mpi_launcher():
    pytest.importorskip("mpi4py", reason="mpi4py is not installed (pip install 'scalems[mpi]')")
    if _mpiexec() is None:
        pytest.skip(f"no mpiexec next to {sys.executable} (pip install mpich)")


@pytest.mark.mpi
def test_mpi_call_gathers_per_rank_results(mpi_launcher, tmp_path, no_leaked_processes):
    call_file = tmp_path / "call.json"
    call_file.write_text(
        serialize_call(
            lambda tag, comm: (comm.Get_size(), comm.Get_rank(), tag), args=("x",), requirements={"ranks": 2}
        )
    )
    out = tmp_path / "out.json"
    process = run_cli(call_file, out, cwd=tmp_path, mpi_ranks=2)
    assert process.returncode == 0, process.stderr
    result = deserialize_result(out.read_text())
    assert result.exception is None
    sizes, ranks, tags = zip(*result.return_value)
    assert sizes == (2, 2)
    assert list(ranks) == [0, 1]
    assert tags == ("x", "x")


@pytest.mark.mpi
def test_mpi_failure_on_one_rank(mpi_launcher, tmp_path, no_leaked_processes):
    def fail_on_rank_one(comm):
        if comm.Get_rank() == 1:
            raise ValueError("bad rank")
        return comm.Get_rank()

    call_file = tmp_path / "call.json"
    call_file.write_text(serialize_call(fail_on_rank_one, comm_arg="", requirements={"ranks": 2}))
    out = tmp_path / "out.json"
    process = run_cli(call_file, out, cwd=tmp_path, mpi_ranks=2)
    assert process.returncode == 1
    result = deserialize_result(out.read_text())
    assert type(result.exception_object) is ValueError
    assert "rank 1" in str(result.exception_object)
    assert "bad rank" in str(result.exception_object)
    assert result.exception == "ValueError('MPI rank 1 of 2: bad rank')"
    assert "rank 1" in result.traceback


def test_script_function_sees_reassigned_global_data(tmp_path):
    """Encodings of script functions are reused only when nothing they read can change."""
    script = tmp_path / "script.py"
    script.write_text(
        "import scalems.call as c\n"
        "THRESHOLD = 1\n"
        "def over(x):\n"
        "    return x > THRESHOLD\n"
        "first = c.execute(c.serialize_call(over, args=(2,)))\n"
        "THRESHOLD = 5\n"
        "second = c.execute(c.serialize_call(over, args=(2,)))\n"
        "print(c.deserialize_result(first).return_value, c.deserialize_result(second).return_value)\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "False"]


# --- the record format of SCALE-MS (seed 004) --------------------------------------------------

# Field names of SCALE-MS's CallPack and ResultPack, written out here so that a change of ours shows.
SEED_CALLPACK_FIELDS = (
    "args",
    "environment",
    "func",
    "kwargs",
    "outputs",
    "requirements",
    "skeleton",
    "decoder",
    "encoder",
)
SEED_RESULTPACK_FIELDS = ("return_value", "exception", "stdout", "stderr", "directory", "decoder", "encoder")


def read_like_scale_ms(call_text: str, result_text: str) -> tuple:
    """A reader written to SCALE-MS's format: it indexes every field and expects no field to be absent."""
    call, result = json.loads(call_text), json.loads(result_text)
    call_fields = tuple(call[key] for key in SEED_CALLPACK_FIELDS)
    return call_fields, tuple(result[key] for key in SEED_RESULTPACK_FIELDS)


def test_records_carry_every_seed_field_with_defaults():
    call = json.loads(serialize_call(scale, args=([1],)))
    assert set(SEED_CALLPACK_FIELDS) <= set(call)
    assert set(call) == set(scalems.call.CallPack.__annotations__)
    assert call["environment"] is None
    assert call["skeleton"] is None
    assert call["requirements"] == {}
    assert call["kwargs"] == {}
    assert call["outputs"] == list(scalems.call.DEFAULT_OUTPUTS)
    assert (call["decoder"], call["encoder"]) == ("dill", "dill")

    result = json.loads(execute(serialize_call(scale, args=([1],))))
    assert set(SEED_RESULTPACK_FIELDS) <= set(result)
    assert set(result) == set(scalems.call.ResultPack.__annotations__)
    assert result["exception"] is None
    assert (result["stdout"], result["stderr"]) == (None, None)
    assert (result["decoder"], result["encoder"]) == ("dill", "dill")


def test_a_reader_of_the_seed_format_indexes_every_field():
    ok_call = serialize_call(scale, args=([1],))
    call_fields, result_fields = read_like_scale_ms(ok_call, execute(ok_call))
    assert dict(zip(SEED_CALLPACK_FIELDS, call_fields))["skeleton"] is None
    assert dict(zip(SEED_RESULTPACK_FIELDS, result_fields))["exception"] is None

    failing_call = serialize_call(raise_detailed, args=(3,))
    _, result_fields = read_like_scale_ms(failing_call, execute(failing_call))
    # The seed documents *exception* as the exception's string representation, readable as is.
    assert dict(zip(SEED_RESULTPACK_FIELDS, result_fields))["exception"] == "DetailedError('code 3 is bad')"


# Written by the previous version of scalems.call, which left out fields at their default and kept
# the pickled exception in *exception*. Stores of earlier runs hold such records.
OLD_CALL = (
    '{"func":"80049511000000000000008c046d617468948c04636f6d629493942e","function":"math.comb",'
    '"args":["80044b052e","80044b022e"],"kwargs":{},"requirements":{}}'
)
OLD_RESULT = '{"return_value":"80044b0a2e","function":"math.comb","directory":"file:///tmp"}'
OLD_FAILURE = (
    '{"exception":"80049546000000000000008c0a64696c6c2e5f64696c6c948c0a5f6c6f61645f747970659493948c0a5'
    '6616c75654572726f7294859452948c116d61746820646f6d61696e206572726f7294859452942e",'
    '"traceback":"ValueError: math domain error\\n","function":"math.sqrt","directory":"file:///tmp"}'
)


def test_records_of_the_previous_version_still_decode():
    call = deserialize_call(OLD_CALL)
    assert call.func is math.comb and call.args == (5, 2)
    assert call.outputs == list(scalems.call.DEFAULT_OUTPUTS)
    assert (call.environment, call.skeleton, call.comm_arg) == (None, None, None)
    assert deserialize_result(execute(OLD_CALL)).return_value == 10

    result = deserialize_result(OLD_RESULT)
    assert (result.return_value, result.exception, result.exception_object) == (10, None, None)
    assert result.directory == "file:///tmp"

    failure = deserialize_result(OLD_FAILURE)
    assert type(failure.exception_object) is ValueError
    assert str(failure.exception_object) == "math domain error"
    assert failure.exception == "ValueError('math domain error')"
    assert failure.traceback == "ValueError: math domain error\n"


def test_result_with_only_the_exception_text_is_a_failure():
    """A writer that follows the seed's documentation sends the text and nothing to unpickle."""
    record = dict.fromkeys(SEED_RESULTPACK_FIELDS)
    record.update(exception="ValueError('x')", decoder="dill", encoder="dill")
    text = json.dumps(record)
    result = deserialize_result(text)
    assert result.exception == "ValueError('x')"
    assert type(result.exception_object) is RuntimeError
    assert str(result.exception_object) == "ValueError('x')"


def test_exception_is_text_and_the_object_is_kept_beside_it():
    call = Call(func=raise_detailed, args=(5,))
    result = main(call)
    assert result.exception == repr(result.exception_object) == "DetailedError('code 5 is bad')"
    assert type(result.exception_object) is DetailedError and result.exception_object.code == 5
    # Code that still hands the exception to *exception* gets the same split.
    legacy = CallResult(exception=KeyError("k"))
    assert legacy.exception == "KeyError('k')"
    assert type(legacy.exception_object) is KeyError
    assert CallResult().exception is None and CallResult().exception_object is None


# --- the subprocess description (function_call_to_subprocess) ---------------------------------------


def run_subprocess(sub: scalems.call.Subprocess, workdir: pathlib.Path, launcher=()) -> CallResult:
    """Run *sub* as a backend would: stage its inputs into *workdir*, run, read the first output.

    Like the backends, give the process this interpreter's import path: functions of this
    module are pickled by reference to it.
    """
    workdir.mkdir()
    for name, source in sub.input_filenames.items():
        shutil.copyfile(source, workdir / name)
    done = subprocess.run(
        [*launcher, sub.executable, *sub.arguments],
        cwd=workdir,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p)),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr
    return deserialize_result((workdir / sub.output_filenames[0]).read_text())


@pytest.fixture
def manager(tmp_path):
    """A real workflow manager, not started: only its directory is needed."""
    import scalems.local
    from scalems.workflow.manager import WorkflowManager

    return WorkflowManager(scalems.local.backend_factory, directory=tmp_path / "workflow")


def test_function_call_to_subprocess_runs_the_call(manager, tmp_path):
    sub = scalems.call.function_call_to_subprocess(
        scale, label="scale 1/2", args=([1, 2],), kwargs={"factor": 5}, manager=manager
    )
    assert sub.uid == "scale 1/2"
    assert sub.executable == sys.executable
    assert sub.requirements == {}
    (input_name, source), = sub.input_filenames.items()
    assert source.parent == manager.directory / "scalems_calls"
    assert sub.output_filenames == (input_name.replace("-input.json", "-output.json"),)
    assert os.sep not in input_name and " " not in input_name
    assert sorted(p.name for p in manager.directory.iterdir()) == ["scalems_calls"]  # the store is not used

    result = run_subprocess(sub, tmp_path / "task")
    assert result.exception is None
    assert result.return_value == [5, 10]
    assert result.directory == (tmp_path / "task").as_uri()


def test_function_call_to_subprocess_reports_a_raising_call(manager, tmp_path):
    sub = scalems.call.function_call_to_subprocess(raise_detailed, label="fails", args=(9,), manager=manager)
    result = run_subprocess(sub, tmp_path / "task")
    assert result.exception == "DetailedError('code 9 is bad')"
    assert result.exception_object.code == 9


def test_call_to_subprocess_for_backends(tmp_path):
    """Backends start from the call text they hold; the requirements come from the record."""
    call = serialize_call(math.comb, args=(5, 2), requirements={"ranks": 1, "cores_per_rank": 2})
    sub = scalems.call.call_to_subprocess(call, label="job-1", directory=tmp_path / "job", python="/opt/python3")
    assert sub.executable == "/opt/python3"
    assert sub.arguments == ("-m", "scalems.call", "job-1-input.json", "job-1-output.json")  # no -X for others
    assert sub.requirements == {"ranks": 1, "cores_per_rank": 2}
    assert sub.input_filenames["job-1-input.json"].read_text() == call
    assert scalems.call.call_file_names("job-1") == ("job-1-input.json", "job-1-output.json")
    with pytest.raises(ProtocolError):
        scalems.call.call_to_subprocess("{}", label="bad", directory=tmp_path / "bad")


def test_function_call_to_subprocess_needs_a_directory():
    with pytest.raises(TypeError, match="directory"):
        scalems.call.function_call_to_subprocess(scale, label="x", args=([1],), manager=object())


@pytest.mark.mpi
def test_function_call_to_subprocess_under_mpiexec(mpi_launcher, manager, tmp_path, no_leaked_processes):
    sub = scalems.call.function_call_to_subprocess(
        lambda comm: comm.Get_rank() * 10, label="ranks", manager=manager, requirements={"ranks": 2}
    )
    assert sub.requirements["ranks"] == 2
    result = run_subprocess(sub, tmp_path / "task", launcher=(_mpiexec(), "-n", str(sub.requirements["ranks"])))
    assert result.exception is None
    assert result.return_value == [0, 10]
