"""A real Slurm cluster (``tools/slurm.sh``) and the ``local.slurm`` resource config for the tests.

Tests here need a running cluster: ``bash tools/slurm.sh start`` (as root; ``.ci/run`` does it).
Without one they are skipped, saying so; with ``SCALEMS_TEST_SLURM=required`` in the
environment (``.ci/run`` sets it after starting the cluster) they fail instead, so that a
cluster that went down cannot pass for a machine without Slurm.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import typing

import pytest

from cli import REPO
from slurm_helpers import SLURM_SH, SlurmCluster, left_outside, outside_snapshot, processes_with, wait_for

RESOURCE_CONFIG = REPO / "examples" / "resources" / "resource_local.json"


def _cluster_or_none() -> typing.Tuple[typing.Optional[SlurmCluster], str]:
    if shutil.which("sinfo") is None:
        return None, "no Slurm here (sinfo is not installed)"
    status = subprocess.run(["bash", str(SLURM_SH), "status"], capture_output=True, text=True, timeout=60)
    if status.returncode != 0:
        return None, f"'bash tools/slurm.sh status' says down (exit {status.returncode}: {status.stdout.strip().replace(chr(10), '; ')})"
    env = subprocess.run(["bash", str(SLURM_SH), "env"], capture_output=True, text=True, timeout=60, check=True)
    conf = pathlib.Path(env.stdout.strip().split("=", 1)[1])
    return SlurmCluster(conf), ""


@pytest.fixture(scope="session")
def slurm_cluster() -> SlurmCluster:
    """The cluster of ``tools/slurm.sh``; skips (or, with SCALEMS_TEST_SLURM=required, fails) without one."""
    cluster, why = _cluster_or_none()
    if cluster is None:
        message = f"no Slurm cluster is up: {why}. Start one as root with 'bash tools/slurm.sh start'."
        if os.environ.get("SCALEMS_TEST_SLURM") == "required":
            pytest.fail(message + " (SCALEMS_TEST_SLURM=required)")
        pytest.skip(message)
    return cluster


@pytest.fixture(scope="session")
def local_slurm(slurm_cluster, test_sandbox) -> typing.Iterator[pathlib.Path]:
    """examples/resources/resource_local.json installed in the confined RP config folder.

    The only change: ``pre_bootstrap_0`` gives the pilot job this test run's HOME and
    TMPDIR. Slurm starts the job in the submitting user's login environment
    (psij submits with ``--export=NONE``), so without them RP's agent would write to the
    real home and /tmp.
    """
    config = json.loads(RESOURCE_CONFIG.read_text())
    entry = config["slurm"]
    entry["pre_bootstrap_0"] = list(entry.get("pre_bootstrap_0") or []) + [
        f"export HOME={os.environ['HOME']}",
        f"export TMPDIR={os.environ['TMPDIR']}",
    ]
    folder = pathlib.Path(os.environ["HOME"]) / ".radical" / "pilot" / "configs"
    assert folder.is_relative_to(test_sandbox)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "resource_local.json"
    assert not target.exists()
    target.write_text(json.dumps(config, indent=4))
    try:
        yield target
    finally:
        target.unlink()


@pytest.fixture
def slurm_run(slurm_cluster, local_slurm, tmp_path) -> typing.Iterator[SlurmCluster]:
    """A test on the cluster: afterwards no job of it is left in Slurm, no process of it runs,
    and nothing of RP's appeared outside the temporary folders."""
    before = outside_snapshot()
    yield slurm_cluster
    # Slurm takes a moment (KillWait, 10 s here) to end a job cancelled just before the test ended.
    ended = wait_for(lambda: not slurm_cluster.active_jobs_under(tmp_path), 60)
    assert ended, f"Slurm jobs of the test are still in the queue: {slurm_cluster.active_jobs_under(tmp_path)}"
    gone = wait_for(lambda: not processes_with(str(tmp_path)), 20)
    assert gone, f"processes of the test are still running: {processes_with(str(tmp_path))}"
    left = left_outside(before, tmp_path)
    assert not left, f"the test left files outside its temporary folders: {left}"
