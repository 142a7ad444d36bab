"""Test-wide isolation.

Everything a test run writes, including what RADICAL-Pilot puts in ``$HOME``,
``~/.radical`` and ``$TMPDIR``, goes under one temporary directory that is
removed at the end. The environment is set at import time, before any test
module imports radical.pilot, and is inherited by every subprocess.
"""

import os
import pathlib
import shutil
import sys
import tempfile

import pytest

_SANDBOX = pathlib.Path(tempfile.mkdtemp(prefix="scalems-tests-"))
for _name in ("home", "radical", "tmp"):
    (_SANDBOX / _name).mkdir()
os.environ["HOME"] = str(_SANDBOX / "home")
os.environ["RADICAL_BASE"] = str(_SANDBOX / "radical")
os.environ["TMPDIR"] = str(_SANDBOX / "tmp")
tempfile.tempdir = None  # make tempfile re-read TMPDIR
# RP starts helper programs (radical-pilot-bridge, ...) by name: the running environment's bin/ must be on PATH.
_BIN = os.path.dirname(sys.executable)
if _BIN not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = _BIN + os.pathsep + os.environ.get("PATH", "")
os.environ.setdefault("RADICAL_REPORT", "FALSE")


# MPICH's shared-memory segments (/dev/shm/mpich_shm_*) stay behind when RADICAL-Pilot ends a
# pilot whose MPI ranks (a Raptor worker's) were still being torn down; they are the only files
# the suite could leave outside its sandbox, so the ones that appear during the run are removed
# at the end. The bench's W6 does the same.
_SHM = pathlib.Path("/dev/shm")
_SHM_BEFORE = {p.name for p in _SHM.glob("mpich_shm_*")} if _SHM.is_dir() else set()


def pytest_unconfigure(config):
    shutil.rmtree(_SANDBOX, ignore_errors=True)
    if _SHM.is_dir():
        for leftover in _SHM.glob("mpich_shm_*"):
            try:
                if leftover.name not in _SHM_BEFORE and leftover.stat().st_uid == os.getuid():
                    leftover.unlink()
            except OSError:
                pass


@pytest.fixture(scope="session")
def test_sandbox() -> pathlib.Path:
    """Root of the confined HOME/RADICAL_BASE/TMPDIR tree for this test run."""
    return _SANDBOX


def _children() -> set:
    """PIDs of live (non-zombie) descendants of this process."""
    me = os.getpid()
    parents = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            parents[int(entry)] = int(fields[1])
    found, frontier = set(), {me}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - found
        found |= frontier
    return found


@pytest.fixture
def no_leaked_processes():
    """Fail the test if it leaves child processes running."""
    before = _children()
    yield
    import time

    deadline = time.monotonic() + 5
    leaked = _children() - before
    while leaked and time.monotonic() < deadline:
        time.sleep(0.05)
        leaked = _children() - before
    assert not leaked, f"test left child processes running: {sorted(leaked)}"


# ---- the contract suite: every backend --------------------------------------------------------
# Tests that take ``make_workflow`` (tests/test_workflow.py, tests/test_contract_*.py) run once per
# backend. The RADICAL-Pilot backends forward to shared sessions (rp_shared.py on local.localhost,
# slurm_shared.py on the Slurm cluster) and carry the ``radical`` marker, so ``-m "not radical"``
# runs the suite on the local and in-memory backends.
# A test marked ``needs_processes`` is not generated for the in-memory backend, which runs none.
from rp_shared import rp_backend, rp_raptor_backend  # noqa: E402,F401  (fixtures)
from slurm_shared import local_slurm, order_slurm_cases_last, slurm_backends, slurm_cluster  # noqa: E402,F401

TOOL = pathlib.Path(__file__).with_name("contract_tool.py")

CONTRACT_BACKENDS = (
    pytest.param("local", id="local"),
    pytest.param("memory", id="memory"),
    pytest.param("radical", id="radical", marks=pytest.mark.radical),
    pytest.param("raptor", id="raptor", marks=pytest.mark.radical),
    # On the Slurm cluster of tools/slurm.sh (local.slurm): the pilot is a batch job, tasks run under srun.
    pytest.param("slurm", id="slurm", marks=[pytest.mark.radical, pytest.mark.slurm]),
    pytest.param("slurm-raptor", id="slurm-raptor", marks=[pytest.mark.radical, pytest.mark.slurm]),
)


def pytest_collection_modifyitems(config, items):
    order_slurm_cases_last(items)


def pytest_generate_tests(metafunc):
    if "backend_name" in metafunc.fixturenames:
        backends = CONTRACT_BACKENDS
        if metafunc.definition.get_closest_marker("needs_processes"):
            backends = [b for b in backends if b.values[0] != "memory"]
        metafunc.parametrize("backend_name", backends)


@pytest.fixture
def make_workflow(backend_name, request):
    """``make_workflow(directory, use_cache=True)`` -> an unstarted WorkflowManager on the backend under test."""
    from scalems.workflow import WorkflowManager

    if backend_name == "local":
        import scalems.local

        def factory(directory, use_cache=True):
            return scalems.local.workflow(directory=directory, cores=2, use_cache=use_cache, progress=False)

    elif backend_name == "memory":
        import scalems.memory
        from contract_tool import stand_in

        def factory(directory, use_cache=True):
            return scalems.memory.workflow(
                directory=directory, cores=2, programs={"contract-tool": stand_in}, use_cache=use_cache
            )

    else:
        from rp_shared import Forwarding

        if backend_name.startswith("slurm"):
            shared = request.getfixturevalue("slurm_backends").get(backend_name)
        else:
            shared = request.getfixturevalue("rp_raptor_backend" if backend_name == "raptor" else "rp_backend")

        def factory(directory, use_cache=True):
            return WorkflowManager(
                lambda manager, params: Forwarding(shared), None, directory=directory, use_cache=use_cache, progress=False
            )

    return factory


@pytest.fixture
def tool(backend_name) -> list:
    """argv prefix of the contract suite's program (contract_tool.py) on the backend under test."""
    if backend_name == "memory":
        return ["contract-tool"]
    return [sys.executable, str(TOOL)]
