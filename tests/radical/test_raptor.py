"""scalems Raptor master/worker: unit checks, then a real RP pilot on this machine.

The RP tests share one RADICAL backend started with ``enable_raptor`` (module
scope) because a pilot takes ~20 s to start: its Raptor client is the one
under test, and further clients start on its pilot the way the backend starts
its own (``RaptorClient.start(runtime, configuration, submitter)``).
Functions run through Raptor are defined as if in a workflow script (module
``__main__``): the worker never ran that script, so this also checks that
such functions travel by value.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import pathlib
import re
import sys
import time
import warnings

import pytest
from rp_shared import SharedBackend as Backend
from rp_shared import snapshot_outside

rp = pytest.importorskip("radical.pilot")
pytest.importorskip("mpi4py")

import scalems.call  # noqa: E402
import scalems.messages  # noqa: E402
import scalems.radical.raptor as raptor  # noqa: E402
from scalems.exceptions import DispatchError, ResourceError, SoftwareCompatibilityError  # noqa: E402
from scalems.execution.jobs import FunctionJob, Resources  # noqa: E402
from scalems.radical.raptor.worker import run_work_item  # noqa: E402

# -- "workflow script" functions -------------------------------------------------------------

_SCRIPT = """
class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y
    def __eq__(self, other):
        return (self.x, self.y) == (getattr(other, "x", None), getattr(other, "y", None))

def square(x):
    return x * x

def fail(n):
    raise ValueError(f"boom {n}")

def make_set():
    return {1, 2, 3}

def make_point():
    return Point(1, 2)

def mpi_info(comm, tag):
    return (comm.Get_rank(), comm.Get_size(), tag)

def die():
    import os
    os._exit(3)

def nap(seconds):
    import time
    time.sleep(seconds)
    return seconds

def pid():
    import os
    return os.getpid()
"""


def _script() -> dict:
    namespace = {"__name__": "__main__"}
    exec(compile(_SCRIPT, "<workflow script>", "exec"), namespace)
    return namespace


SCRIPT = _script()


def _job(func, *args, ranks=1, comm_arg=None, label=None, **kwargs) -> FunctionJob:
    call = scalems.call.serialize_call(
        func, args=args, kwargs=kwargs, requirements={"ranks": ranks}, comm_arg=comm_arg
    )
    label = label or f"{func.__name__}{args}"
    return FunctionJob(uid=label, label=label, call=call, resources=Resources(ranks=ranks), comm_arg=comm_arg)


def _value(text: str):
    result = scalems.call.deserialize_result(text)
    assert result.exception is None, result.traceback
    return result.return_value


def _configuration(versioned_modules=()):
    return raptor.MasterTaskConfiguration(
        worker=raptor.worker_requirements(pre_exec=["true"], cpu_processes=1),
        versioned_modules=list(versioned_modules),
    )


def _offline_master(configuration=None) -> raptor.ScaleMSMaster:
    """A master outside an RP task: enough to exercise configure_worker and request_cb."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return raptor.ScaleMSMaster(configuration or _configuration())


# -- no RP session needed --------------------------------------------------------------------


def test_master_script_resolves():
    import shutil

    assert raptor.master_script() == "scalems_rp_master"
    assert shutil.which("scalems_rp_master", path=os.path.dirname(sys.executable))


def test_incompatible_versions_raise():
    configuration = _configuration([("radical.pilot", "999")])
    with pytest.raises(SoftwareCompatibilityError) as info:
        raptor.ScaleMSMaster(configuration)
    message = str(info.value)
    assert "radical.pilot" in message and "999" in message and str(rp.version) in message
    assert raptor.SoftwareCompatibilityError is SoftwareCompatibilityError


def test_missing_module_raises():
    with pytest.raises(SoftwareCompatibilityError, match="no_such_module_for_scalems"):
        raptor.ScaleMSMaster(_configuration([("no_such_module_for_scalems", "1.0")]))


def test_master_input_round_trip(tmp_path):
    path = raptor.master_input(
        directory=tmp_path, worker_pre_exec=["echo hi"], worker_venv="/some/venv", cpu_processes=3
    )
    assert path.parent == tmp_path
    configuration = raptor.MasterTaskConfiguration.from_dict(json.loads(path.read_text()))
    assert configuration.worker.cpu_processes == 3
    assert configuration.worker.pre_exec == ("echo hi",)
    assert ("scalems", scalems.__version__) in configuration.versioned_modules
    # Same content, same file; a different configuration gets its own file.
    assert (
        raptor.master_input(
            directory=tmp_path, worker_pre_exec=["echo hi"], worker_venv="/some/venv", cpu_processes=3
        )
        == path
    )
    assert raptor.master_input(directory=tmp_path) != path
    # The master script's parser takes exactly one file.
    assert raptor.parser.parse_args([str(path)]).file == str(path)


def test_configure_worker_writes_module_file(tmp_path, monkeypatch):
    master = _offline_master()
    requirements = raptor.worker_requirements(pre_exec=["export X=1"], cpu_processes=2)
    monkeypatch.chdir(tmp_path)  # the master's task sandbox
    with master.configure_worker(requirements) as descriptions:
        assert len(descriptions) == 1
        description = descriptions[0]
        assert description.mode == rp.RAPTOR_WORKER
        assert description.raptor_class == "ScaleMSWorker"
        assert description.ranks == 2
        assert description.pre_exec == ["export X=1"]
        worker_file = pathlib.Path(description.raptor_file)
        assert worker_file.is_absolute() and worker_file.exists() and worker_file.parent.parent == tmp_path
        import radical.utils as ru

        assert ru.load_class(str(worker_file), "ScaleMSWorker", rp.raptor.Worker) is raptor.ScaleMSWorker
    assert not worker_file.exists()


class _RecordingMaster:
    """Stands in for RP's finalization so request_cb can be checked offline."""

    def __init__(self):
        self.master = _offline_master()
        self.finalized = []
        self.master._result_cb = self._result_cb
        self.master._uid = "raptor.test"
        self.master._workers = {}

    def _result_cb(self, task):
        self.finalized.append(task)
        self.master.result_cb([task])


def _command_task(uid, command) -> dict:
    return {"uid": uid, "description": {"mode": raptor.CPI_MESSAGE, "metadata": command.encode()}}


def test_request_cb_dispatches_commands():
    recorder = _RecordingMaster()
    master = recorder.master
    item = {"call": _job(SCRIPT["square"], 3).call, "comm_arg_name": None, "label": "sq"}
    plain = {"uid": "plain", "description": {"mode": rp.TASK_FUNCTION, "function": "hello"}}
    # Only scalems.call records travel as work items; a module/func pair is refused.
    by_name = {"module": "builtins", "func": "repr", "args": [], "kwargs": {}}
    tasks = [
        _command_task("hello", scalems.messages.HelloCommand()),
        _command_task("add", scalems.messages.AddItem(json.dumps(item))),
        plain,
        {"uid": "bad", "description": {"mode": raptor.CPI_MESSAGE, "metadata": {"command": "Nope"}}},
        _command_task("by-name", scalems.messages.AddItem(json.dumps(by_name))),
    ]
    forwarded = master.request_cb(tasks)
    assert [t["uid"] for t in forwarded] == ["add", "plain"]
    add = forwarded[0]["description"]
    assert add["mode"] == rp.TASK_FUNCTION and add["function"] == "run_in_worker"
    assert add["kwargs"]["work_item"] == {"call": item["call"], "comm_arg_name": None, "label": "sq"}
    finalized = {t["uid"]: t for t in recorder.finalized}
    assert finalized["by-name"]["exit_code"] == 1 and "'call'" in finalized["by-name"]["exception"]
    assert finalized["hello"]["exit_code"] == 0
    assert finalized["hello"]["return_value"] == {
        "name": "scalems.radical.raptor",
        "version": scalems.__version__,
        "workers": None,  # an offline master has no pool
    }
    assert finalized["bad"]["exit_code"] == 1 and "Nope" in finalized["bad"]["exception"]
    assert sorted(master.pending_work()) == ["add", "plain"]
    master.result_cb([forwarded[1]])
    assert master.pending_work() == ["add"]


def test_run_work_item_returns_only_strings_for_calls():
    # A set and an exception would break msgpack; a call record makes them text.
    text = run_work_item({"call": _job(SCRIPT["make_set"]).call})
    assert isinstance(text, str) and _value(text) == {1, 2, 3}
    text = run_work_item({"call": _job(SCRIPT["fail"], 5).call})
    assert isinstance(scalems.call.deserialize_result(text).exception_object, ValueError)
    # A (single-rank) function asking for a communicator gets COMM_SELF.
    job = _job(SCRIPT["mpi_info"], tag="s", comm_arg="comm")
    assert _value(run_work_item({"call": job.call, "comm_arg_name": "comm"})) == (0, 1, "s")


# -- real RP pilot ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def raptor_backend(tmp_path_factory):
    """A RADICAL backend with --enable-raptor on a local pilot (room for a few extra masters)."""
    from scalems.radical import RadicalBackend, RuntimeConfiguration

    base = tmp_path_factory.mktemp("raptor")
    configuration = RuntimeConfiguration(
        execution_target="local.localhost",
        rp_resource_params={"cores": 8, "runtime": 15, "sandbox": str(base / "sandbox")},
        session_dir=str(base / "session"),
        enable_raptor=True,
    )
    backend = Backend(RadicalBackend(configuration=configuration, work_dir=base), base, snapshot_outside())
    try:
        backend.start()
        yield backend
    finally:
        backend.close()


@pytest.fixture(scope="module")
def client(raptor_backend) -> raptor.RaptorClient:
    """The backend's own Raptor client (master and single-rank worker)."""
    assert isinstance(raptor_backend.executor.raptor, raptor.RaptorClient)
    return raptor_backend.executor.raptor


async def _start_client(backend: Backend, configuration=None) -> raptor.RaptorClient:
    """Another master on the backend's pilot, started the way the backend starts its own."""
    executor = backend.executor
    return await raptor.RaptorClient.start(
        executor.runtime, configuration or executor.configuration(), executor._submitter
    )


@pytest.mark.radical
def test_hello_returns_backend_version(raptor_backend, client):
    hello = raptor_backend.call(client.hello(timeout=60))
    assert (hello.name, hello.version) == (raptor.backend_version.name, raptor.backend_version.version)
    assert hello.workers == 1
    assert isinstance(client.worker_pid, int)
    assert client.worker_ranks == 1


@pytest.mark.radical
def test_master_configuration_is_in_the_session_folder(raptor_backend, client):
    config_file = pathlib.Path(client.config_file)
    assert config_file.parent == pathlib.Path(raptor_backend.executor.runtime.session.path)
    configuration = raptor.MasterTaskConfiguration.from_dict(json.loads(config_file.read_text()))
    assert configuration.worker.cpu_processes == 1
    assert ("scalems", scalems.__version__) in configuration.versioned_modules


@pytest.mark.radical
def test_backend_runs_single_rank_function_jobs_in_the_raptor_worker(raptor_backend, client):
    outcome = raptor_backend.run(_job(SCRIPT["pid"]), timeout=120)
    assert outcome.error is None and _value(outcome.result) == client.worker_pid


@pytest.mark.radical
def test_functions_from_modules_beside_the_script_run_in_the_raptor_worker(raptor_backend, client):
    # Pickled by reference (not by value, as __main__ functions): the worker imports the module,
    # which it finds because the client's user-code directories are on its PYTHONPATH.
    from raptor_beside_script import where

    job = _job(where, 4)
    assert b"raptor_beside_script" in job.call.encode() and b"def where" not in job.call.encode()
    outcome = raptor_backend.run(job, timeout=120)
    assert outcome.error is None
    assert _value(outcome.result) == (12, client.worker_pid)


@pytest.mark.radical
def test_many_function_tasks(raptor_backend, client, record_property):
    square = SCRIPT["square"]
    jobs = [_job(square, i) for i in range(200)]

    async def run_all():
        return await asyncio.gather(*(client.run_function(job, timeout=240) for job in jobs))

    start = time.monotonic()
    outcomes = raptor_backend.call(run_all(), timeout=300)
    elapsed = time.monotonic() - start
    assert [o.error for o in outcomes] == [None] * 200
    assert [_value(o.result) for o in outcomes] == [i * i for i in range(200)]
    record_property("raptor_tasks_per_second", round(200 / elapsed, 1))
    print(f"\n200 Raptor function tasks in {elapsed:.2f} s ({200 / elapsed:.1f} tasks/s)")


@pytest.mark.radical
def test_failures_and_unencodable_values_stay_isolated(raptor_backend, client):
    jobs = [
        _job(SCRIPT["fail"], 7),
        _job(SCRIPT["make_set"]),
        _job(SCRIPT["make_point"]),
        _job(SCRIPT["square"], 12),
    ]

    async def run_all():
        return await asyncio.gather(*(client.run_function(job, timeout=120) for job in jobs))

    failed, a_set, a_point, later = raptor_backend.call(run_all())
    result = scalems.call.deserialize_result(failed.result)
    assert isinstance(result.exception_object, ValueError) and "boom 7" in str(result.exception_object)
    assert "boom 7" in result.traceback
    assert _value(a_set.result) == {1, 2, 3}
    assert _value(a_point.result) == SCRIPT["Point"](1, 2)
    assert _value(later.result) == 144
    # The worker is still healthy afterwards.
    outcome = raptor_backend.call(client.run_function(_job(SCRIPT["square"], 5), timeout=60))
    assert _value(outcome.result) == 25


@pytest.mark.radical
def test_too_many_ranks_is_refused(raptor_backend, client):
    with pytest.raises(ResourceError):
        raptor_backend.call(client.run_function(_job(SCRIPT["mpi_info"], tag="x", ranks=2, comm_arg="comm")))


@pytest.mark.radical
def test_worker_that_cannot_start_is_reported(raptor_backend):
    # A worker whose environment is broken (here: its pre_exec fails) never registers with
    # the master: a clear error, not a hang until the start-up timeout.
    broken = 'case "$RP_TASK_ID" in *.worker.*) echo "scalems test: broken worker environment" >&2; exit 3;; esac'
    configuration = dataclasses.replace(raptor_backend.executor.configuration(), pre_exec=(broken,))
    start = time.monotonic()
    with pytest.raises(DispatchError, match="worker|Worker") as error:
        raptor_backend.call(_start_client(raptor_backend, configuration), timeout=300)
    assert time.monotonic() - start < 120
    message = str(error.value)
    assert "ended (FAILED)" in message and "every worker task ended before registering" in message


@pytest.mark.radical
def test_cancelled_call_does_not_block_others(raptor_backend, client):
    async def scenario():
        napping = asyncio.ensure_future(client.run_function(_job(SCRIPT["nap"], 1), timeout=60))
        await asyncio.sleep(0.3)
        napping.cancel()
        with pytest.raises(asyncio.CancelledError):
            await napping
        return await client.run_function(_job(SCRIPT["square"], 3), timeout=60)

    assert _value(raptor_backend.call(scenario()).result) == 9


@pytest.mark.radical
def test_master_death_fails_pending_work(raptor_backend):
    task_manager = raptor_backend.executor.runtime.task_manager()

    async def scenario():
        doomed = await _start_client(raptor_backend)
        try:
            napping = asyncio.ensure_future(doomed.run_function(_job(SCRIPT["nap"], 60), timeout=120))
            await asyncio.sleep(2)
            await asyncio.to_thread(task_manager.cancel_tasks, [doomed.master_uid])
            return doomed, await asyncio.wait_for(napping, 60)
        finally:
            await doomed.stop(timeout=30)

    doomed, outcome = raptor_backend.call(scenario(), timeout=300)
    assert outcome.result is None and doomed.master_uid in outcome.error
    assert doomed.master_state == rp.CANCELED


@pytest.mark.radical
def test_worker_crash_fails_only_its_call_and_the_worker_is_replaced(raptor_backend):
    # A call that takes its worker down fails clearly (never hangs, never runs again); the
    # master stays up, starts a replacement worker, and later calls run there.
    async def scenario():
        doomed = await _start_client(raptor_backend)
        try:
            crashed = await doomed.run_function(_job(SCRIPT["die"]), timeout=120)
            later = await doomed.run_function(_job(SCRIPT["pid"]), timeout=120)
            return doomed, crashed, later, doomed.alive, await doomed.hello(timeout=60)
        finally:
            await doomed.stop(timeout=30)

    doomed, crashed, later, alive, hello = raptor_backend.call(scenario(), timeout=300)
    assert crashed.result is None
    # The exit status is named when RP reports it in time (it may mark the worker done first).
    assert re.search(r"ended( \(exit status 3\))? while running 'die\(\)'", crashed.error), crashed.error
    assert "not run again" in crashed.error
    assert alive and hello.workers == 1
    assert _value(later.result) != doomed.worker_pid
    assert doomed.master_state == rp.DONE


@pytest.mark.radical
def test_stop_ends_master_done(raptor_backend):
    async def stop_with_pending_work():
        stopping = await _start_client(raptor_backend)
        napping = asyncio.ensure_future(stopping.run_function(_job(SCRIPT["nap"], 2), timeout=60))
        await asyncio.sleep(1)
        await stopping.stop(timeout=60)
        return stopping, await napping

    # Stop lets submitted work finish first.
    stopped, outcome = raptor_backend.call(stop_with_pending_work(), timeout=300)
    assert _value(outcome.result) == 2
    assert stopped.master_state == rp.DONE and not stopped.alive
    with pytest.raises(DispatchError):
        raptor_backend.call(stopped.run_function(_job(SCRIPT["square"], 2)))


@pytest.mark.radical
def test_a_call_that_kills_the_worker_fails_alone(raptor_backend, client, tmp_path):
    """Through the backend: the other calls, held by the same worker or queued, all succeed."""
    jobs = [_job(SCRIPT["die"])] + [_job(SCRIPT["square"], i) for i in range(6)]
    jobs = [job._replace(directory=tmp_path / f"task{n}") for n, job in enumerate(jobs)]

    async def run_all():
        return await asyncio.gather(*(raptor_backend.executor.run(job) for job in jobs))

    crashed, *others = raptor_backend.call(run_all(), timeout=300)
    assert crashed.result is None and "while running 'die()'" in crashed.error
    assert [_value(outcome.result) for outcome in others] == [i * i for i in range(6)]
    # The master lives on with a replacement worker; later calls run there.
    assert client.alive
    later = raptor_backend.run(_job(SCRIPT["pid"])._replace(directory=tmp_path / "later"), timeout=120)
    assert later.error is None and _value(later.result) != client.worker_pid
    assert raptor_backend.call(client.hello(timeout=60)).workers == 1


def _leftovers(markers) -> list:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmdline = fh.read()
            with open(f"/proc/{entry}/environ", "rb") as fh:
                environ = fh.read()
            with open(f"/proc/{entry}/stat") as fh:
                if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                    continue
        except OSError:
            continue
        if any(marker in cmdline or marker in environ for marker in markers):
            found.append((int(entry), cmdline.replace(b"\0", b" ").decode(errors="replace")[:200]))
    return found


@pytest.mark.radical
def test_no_processes_left_after_close(raptor_backend):
    markers = [raptor_backend.sid.encode(), str(raptor_backend.base).encode()]
    if not raptor_backend.closed:
        # The scan must see this session's agent while it runs, or it proves nothing.
        assert _leftovers(markers)
    raptor_backend.close()
    deadline = time.monotonic() + 60
    left = _leftovers(markers)
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = _leftovers(markers)
    assert not left, f"processes of session {raptor_backend.sid} left behind: {left}"
    assert snapshot_outside() == raptor_backend.before
