"""scalems Raptor master/worker: unit checks, then one real RP pilot on this machine.

The RP tests share one session and pilot (module scope) because a pilot takes
~20 s to start. Functions run through Raptor are defined as if in a workflow
script (module ``__main__``): the worker never ran that script, so this also
checks that such functions travel by value.
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import sys
import time
import warnings

import pytest

rp = pytest.importorskip("radical.pilot")
pytest.importorskip("mpi4py")

import scalems.call  # noqa: E402
import scalems.messages  # noqa: E402
import scalems.radical.raptor as raptor  # noqa: E402
from scalems.exceptions import DispatchError, ResourceError, SoftwareCompatibilityError  # noqa: E402
from scalems.execution.jobs import FunctionJob, Resources  # noqa: E402
from scalems.radical.raptor.worker import decode_rank_result, run_work_item  # noqa: E402

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


def test_configure_worker_writes_module_file(tmp_path):
    master = _offline_master()
    requirements = raptor.worker_requirements(pre_exec=["export X=1"], cpu_processes=2)
    with master.configure_worker(requirements, directory=str(tmp_path)) as descriptions:
        assert len(descriptions) == 1
        description = descriptions[0]
        assert description.mode == rp.RAPTOR_WORKER
        assert description.raptor_class == "ScaleMSWorker"
        assert description.ranks == 2
        assert description.pre_exec == ["export X=1"]
        worker_file = pathlib.Path(description.raptor_file)
        assert worker_file.is_absolute() and worker_file.exists()
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
    item = {"call": _job(SCRIPT["square"], 3).call, "comm_arg_name": None, "ranks": 1, "label": "sq"}
    plain = {"uid": "plain", "description": {"mode": rp.TASK_FUNCTION, "function": "hello"}}
    tasks = [
        _command_task("hello", scalems.messages.HelloCommand()),
        _command_task("add", scalems.messages.AddItem(json.dumps(item))),
        plain,
        {"uid": "bad", "description": {"mode": raptor.CPI_MESSAGE, "metadata": {"command": "Nope"}}},
    ]
    forwarded = master.request_cb(tasks)
    assert [t["uid"] for t in forwarded] == ["add", "plain"]
    add = forwarded[0]["description"]
    assert add["mode"] == rp.TASK_FUNCTION and add["function"] == "run_in_worker"
    assert add["kwargs"]["work_item"]["call"] == item["call"]
    finalized = {t["uid"]: t for t in recorder.finalized}
    assert finalized["hello"]["exit_code"] == 0
    assert finalized["hello"]["return_value"] == {
        "name": "scalems.radical.raptor",
        "version": scalems.__version__,
    }
    assert finalized["bad"]["exit_code"] == 1 and "Nope" in finalized["bad"]["exception"]
    assert sorted(master.pending_work()) == ["add", "plain"]
    master.result_cb([forwarded[1]])
    assert master.pending_work() == ["add"]


class _FakeComm:
    def __init__(self, rank, size):
        self.rank, self.size = rank, size

    def Get_rank(self):
        return self.rank

    def Get_size(self):
        return self.size


def test_run_work_item_returns_only_strings_for_calls():
    # A set and an exception would break msgpack; a call record makes them text.
    text = run_work_item({"call": _job(SCRIPT["make_set"]).call})
    assert isinstance(text, str) and _value(text) == {1, 2, 3}
    text = run_work_item({"call": _job(SCRIPT["fail"], 5).call})
    assert isinstance(scalems.call.deserialize_result(text).exception_object, ValueError)
    # Per-rank envelope on more than one rank, with the communicator passed as asked.
    job = _job(SCRIPT["mpi_info"], tag="t", ranks=2, comm_arg="comm")
    envelope = run_work_item({"call": job.call, "comm_arg_name": "comm", "ranks": 2}, comm=_FakeComm(1, 2))
    rank, text = decode_rank_result(envelope)
    assert rank == 1 and _value(text) == (1, 2, "t")
    # A single-rank function asking for a communicator gets COMM_SELF.
    job = _job(SCRIPT["mpi_info"], tag="s", comm_arg="comm")
    assert _value(run_work_item({"call": job.call, "comm_arg_name": "comm", "ranks": 1})) == (0, 1, "s")


def test_run_work_item_importable_function_honours_comm_arg():
    item = {"module": "builtins", "func": "repr", "args": [], "kwargs": {}}
    assert run_work_item(dict(item, comm_arg_name=""), comm="COMM") == "'COMM'"
    assert run_work_item(dict(item, func="dict", comm_arg_name="c"), comm="COMM") == {"c": "COMM"}
    assert run_work_item(dict(item, func="len", args=["abc"], comm_arg_name=None), comm="COMM") == 3
    with pytest.raises(TypeError, match="cannot transport"):
        run_work_item({"module": "builtins", "func": "set", "args": [[1, 2]], "kwargs": {}})


# -- real RP pilot ---------------------------------------------------------------------------

_SITE = "scalems_raptor"
_RESOURCE = f"{_SITE}.localhost"


def _write_resource_config():
    """local.localhost, plus the venv's bin/ on PATH for MPIEXEC (the pilot bootstrap resets PATH)."""
    import radical.utils as ru

    system = ru.read_json(os.path.join(os.path.dirname(rp.__file__), "configs", "resource_local.json"))
    config = dict(system["localhost"])
    venv_bin = os.path.dirname(sys.executable)
    config["launch_methods"] = {
        "order": ["FORK", "MPIEXEC"],
        "FORK": {},
        "MPIEXEC": {"pre_exec_cached": [f"export PATH={venv_bin}:$PATH"]},
    }
    home = os.environ.get("RADICAL_CONFIG_USER_DIR") or os.environ["HOME"]
    directory = pathlib.Path(home, ".radical", "pilot", "configs")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"resource_{_SITE}.json").write_text(json.dumps({"localhost": config}, indent=1))


class _Pilot:
    """What RaptorClient.start() expects of the backend's session object."""

    def __init__(self, base: pathlib.Path):
        self.base = base
        self.session = rp.Session()
        self.sid = self.session.uid
        self._pmgr = rp.PilotManager(self.session)
        self._tmgr = rp.TaskManager(self.session)
        # exit_on_error=False: RP's default answers a failed pilot with SIGTERM to this process.
        description = {
            "resource": _RESOURCE,
            "cores": 8,
            "runtime": 15,
            "sandbox": str(base / "sandbox"),
            "exit_on_error": False,
        }
        self._pilot = self._pmgr.submit_pilots(rp.PilotDescription(description))
        self._tmgr.add_pilots(self._pilot)
        self.closed = False

    def pilot(self):
        return self._pilot

    def task_manager(self):
        return self._tmgr

    def close(self):
        if not self.closed:
            self.closed = True
            self.session.close(download=False)


@pytest.fixture(scope="module")
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def pilot(tmp_path_factory):
    base = tmp_path_factory.mktemp("raptor")
    _write_resource_config()
    # RP puts its client-side session folder in $PWD (the variable, not os.getcwd()).
    cwd, pwd, venv = os.getcwd(), os.environ.get("PWD"), os.environ.get("VIRTUAL_ENV")
    os.chdir(base)
    os.environ["PWD"] = str(base)
    # The local pilot's bootstrap takes its Python from VIRTUAL_ENV (unset when the venv's python
    # runs without activation); otherwise it falls back to the system Python, which has no RP.
    os.environ["VIRTUAL_ENV"] = sys.prefix
    handle = None
    try:
        handle = _Pilot(base)
        yield handle
    finally:
        try:
            if handle is not None:
                handle.close()
        finally:
            os.chdir(cwd)
            for name, value in (("PWD", pwd), ("VIRTUAL_ENV", venv)):
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


@pytest.fixture(scope="module")
def client(pilot, loop):
    """A master with the default single-rank worker."""
    client = loop.run_until_complete(raptor.RaptorClient.start(pilot, None, pilot.base, startup_timeout=180))
    yield client
    loop.run_until_complete(client.stop(timeout=60))


@pytest.fixture(scope="module")
def mpi_client(pilot, loop):
    """A second master whose worker is sized by a two-rank job (MPI launch)."""
    jobs = [_job(SCRIPT["mpi_info"], tag="x", ranks=2, comm_arg="comm")]
    client = loop.run_until_complete(
        raptor.RaptorClient.start(pilot, None, pilot.base, jobs=jobs, startup_timeout=180)
    )
    yield client
    loop.run_until_complete(client.stop(timeout=60))


@pytest.mark.radical
def test_hello_returns_backend_version(client, loop):
    assert loop.run_until_complete(client.hello(timeout=60)) == raptor.backend_version
    assert isinstance(client.worker_pid, int)
    assert client.worker_ranks == 1


@pytest.mark.radical
def test_many_function_tasks(client, loop, record_property):
    square = SCRIPT["square"]
    jobs = [_job(square, i) for i in range(200)]

    async def run_all():
        return await asyncio.gather(*(client.run_function(job, timeout=240) for job in jobs))

    start = time.monotonic()
    outcomes = loop.run_until_complete(run_all())
    elapsed = time.monotonic() - start
    assert [o.error for o in outcomes] == [None] * 200
    assert [_value(o.result) for o in outcomes] == [i * i for i in range(200)]
    record_property("raptor_tasks_per_second", round(200 / elapsed, 1))
    print(f"\n200 Raptor function tasks in {elapsed:.2f} s ({200 / elapsed:.1f} tasks/s)")


@pytest.mark.radical
def test_failures_and_unencodable_values_stay_isolated(client, loop):
    jobs = [
        _job(SCRIPT["fail"], 7),
        _job(SCRIPT["make_set"]),
        _job(SCRIPT["make_point"]),
        _job(SCRIPT["square"], 12),
    ]

    async def run_all():
        return await asyncio.gather(*(client.run_function(job, timeout=120) for job in jobs))

    failed, a_set, a_point, later = loop.run_until_complete(run_all())
    result = scalems.call.deserialize_result(failed.result)
    assert isinstance(result.exception_object, ValueError) and "boom 7" in str(result.exception_object)
    assert "boom 7" in result.traceback
    assert _value(a_set.result) == {1, 2, 3}
    assert _value(a_point.result) == SCRIPT["Point"](1, 2)
    assert _value(later.result) == 144
    # The worker is still healthy afterwards.
    outcome = loop.run_until_complete(client.run_function(_job(SCRIPT["square"], 5), timeout=60))
    assert _value(outcome.result) == 25


@pytest.mark.radical
def test_too_many_ranks_is_refused(client, loop):
    with pytest.raises(ResourceError):
        loop.run_until_complete(
            client.run_function(_job(SCRIPT["mpi_info"], tag="x", ranks=2, comm_arg="comm"))
        )


@pytest.mark.radical
@pytest.mark.mpi
def test_two_rank_function_gets_a_communicator(mpi_client, loop):
    assert mpi_client.worker_ranks == 2
    job = _job(SCRIPT["mpi_info"], tag="tag", ranks=2, comm_arg="comm")
    outcome = loop.run_until_complete(mpi_client.run_function(job, timeout=120))
    assert outcome.error is None
    assert isinstance(outcome.result, list) and len(outcome.result) == 2
    assert [_value(text) for text in outcome.result] == [(0, 2, "tag"), (1, 2, "tag")]

    # Single-rank tasks share the same two-rank worker.
    async def run_all():
        return await asyncio.gather(
            *(mpi_client.run_function(_job(SCRIPT["square"], i), timeout=120) for i in range(10))
        )

    outcomes = loop.run_until_complete(run_all())
    assert [_value(o.result) for o in outcomes] == [i * i for i in range(10)]


@pytest.mark.radical
def test_worker_that_never_starts_is_reported(pilot, loop):
    # A worker bigger than the pilot can never be scheduled: a clear error, not a hang.
    start = time.monotonic()
    with pytest.raises(DispatchError, match="worker|Worker"):
        loop.run_until_complete(
            raptor.RaptorClient.start(pilot, None, pilot.base, worker_ranks=64, startup_timeout=20)
        )
    assert time.monotonic() - start < 120


@pytest.mark.radical
def test_cancelled_call_does_not_block_others(client, loop):
    async def scenario():
        napping = asyncio.ensure_future(client.run_function(_job(SCRIPT["nap"], 1), timeout=60))
        await asyncio.sleep(0.3)
        napping.cancel()
        with pytest.raises(asyncio.CancelledError):
            await napping
        return await client.run_function(_job(SCRIPT["square"], 3), timeout=60)

    assert _value(loop.run_until_complete(scenario()).result) == 9


@pytest.mark.radical
def test_master_death_fails_pending_work(pilot, loop):
    async def scenario():
        doomed = await raptor.RaptorClient.start(pilot, None, pilot.base, startup_timeout=180)
        try:
            napping = asyncio.ensure_future(doomed.run_function(_job(SCRIPT["nap"], 60), timeout=120))
            await asyncio.sleep(2)
            await asyncio.to_thread(pilot.task_manager().cancel_tasks, [doomed.master_uid])
            return doomed, await asyncio.wait_for(napping, 60)
        finally:
            await doomed.stop(timeout=30)

    start = time.monotonic()
    doomed, outcome = loop.run_until_complete(scenario())
    assert outcome.result is None and doomed.master_uid in outcome.error
    assert doomed.master_state == rp.CANCELED
    assert time.monotonic() - start < 60


@pytest.mark.radical
def test_worker_crash_is_reported(pilot, loop):
    # A call that takes its worker down cannot be isolated; it must still fail clearly, not hang.
    async def scenario():
        doomed = await raptor.RaptorClient.start(pilot, None, pilot.base, startup_timeout=180)
        try:
            return doomed, await doomed.run_function(_job(SCRIPT["die"]), timeout=120)
        finally:
            await doomed.stop(timeout=30)

    start = time.monotonic()
    doomed, outcome = loop.run_until_complete(scenario())
    assert outcome.result is None and doomed.master_uid in outcome.error
    assert "all workers ended unexpectedly while running 'die()'" in outcome.error
    assert doomed.master_state in (rp.FAILED, rp.CANCELED)
    assert time.monotonic() - start < 100


@pytest.mark.radical
def test_stop_ends_master_done(client, mpi_client, loop):
    async def stop_with_pending_work():
        napping = asyncio.ensure_future(client.run_function(_job(SCRIPT["nap"], 2), timeout=60))
        await asyncio.sleep(1)
        await client.stop(timeout=60)
        return await napping

    # Stop lets submitted work finish first.
    assert _value(loop.run_until_complete(stop_with_pending_work()).result) == 2
    loop.run_until_complete(mpi_client.stop(timeout=60))
    for each in (client, mpi_client):
        assert each.master_state == rp.DONE
    with pytest.raises(DispatchError):
        loop.run_until_complete(client.run_function(_job(SCRIPT["square"], 2)))


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
def test_no_processes_left_after_close(pilot):
    markers = [pilot.sid.encode(), str(pilot.base).encode()]
    if not pilot.closed:
        # The scan must see this session's agent while it runs, or it proves nothing.
        assert _leftovers(markers)
    pilot.close()
    deadline = time.monotonic() + 60
    left = _leftovers(markers)
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = _leftovers(markers)
    assert not left, f"processes of session {pilot.sid} left behind: {left}"


def test_master_input_goes_into_the_store(tmp_path):
    import json as _json

    from scalems.radical.raptor import MasterTaskConfiguration, master_input
    from scalems.store import FileStore

    with FileStore(tmp_path) as store:
        path = master_input(filestore=store, worker_pre_exec=["echo hi"], cpu_processes=2)
        assert path.parent.parent == store.path / "files"
        configuration = MasterTaskConfiguration.from_dict(_json.loads(path.read_text()))
        assert configuration.worker.cpu_processes == 2
        assert master_input(filestore=store, worker_pre_exec=["echo hi"], cpu_processes=2) == path
