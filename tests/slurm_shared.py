"""The Slurm cluster of ``tools/slurm.sh``, the ``local.slurm`` resource config, and shared
RADICAL-Pilot backends on that cluster for the contract suite.

Tests on the cluster need it running: ``bash tools/slurm.sh start`` (as root; ``.ci/run`` does
it). Without one they are skipped, saying so; with ``SCALEMS_TEST_SLURM=required`` in the
environment (``.ci/run`` sets it after starting the cluster) they fail instead, so that a cluster
that went down cannot pass for a machine without Slurm.

The cluster has one 2-core node, and a shared pilot asks for both cores. So at most one shared
Slurm backend lives at a time (asking for the other flavour closes the first), and the contract
suite's Slurm cases run after every other test (:func:`order_slurm_cases_last`): a test that
submits a pilot of its own must not queue behind a shared one.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import typing

import pytest

from cli import REPO
from rp_shared import SharedBackend, private_backend
from slurm_helpers import SLURM_SH, SlurmCluster

RESOURCE_CONFIG = REPO / "examples" / "resources" / "resource_local.json"

#: Contract-suite backend names that run on the Slurm cluster, in the order they run.
SLURM_CONTRACT_BACKENDS = ("slurm", "slurm-raptor")


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
    _forget_resource_configs()
    try:
        yield target
    finally:
        target.unlink()
        _forget_resource_configs()


def _forget_resource_configs():
    """Make this process's scalems read RP's resource configs again (they are cached once read)."""
    if "scalems.radical.runtime_configuration" in sys.modules:
        sys.modules["scalems.radical.runtime_configuration"]._resource_configs.cache_clear()


class SlurmBackends:
    """At most one live shared backend on the cluster's 2-core node: a pilot holds the whole node."""

    def __init__(self, cluster: SlurmCluster, base: pathlib.Path):
        self._cluster = cluster
        self._base = base
        self._live: typing.Optional[typing.Tuple[str, SharedBackend]] = None

    def get(self, flavour: str) -> SharedBackend:
        if self._live is not None and self._live[0] == flavour and not self._live[1].closed:
            return self._live[1]
        self.close()
        # psij's sbatch runs in this process and must find the cluster.
        os.environ.update(self._cluster.env)
        backend = private_backend(
            self._base / flavour,
            resource="local.slurm",
            enable_raptor=flavour == "slurm-raptor",
            # The test run's environment is the task environment (it is on the node's file system).
            target_venv=sys.prefix,
        )
        self._live = (flavour, backend)
        return backend

    def close(self):
        live, self._live = self._live, None
        if live is not None:
            live[1].close()


@pytest.fixture(scope="session")
def slurm_backends(slurm_cluster, local_slurm, tmp_path_factory) -> typing.Iterator[SlurmBackends]:
    backends = SlurmBackends(slurm_cluster, tmp_path_factory.mktemp("slurm-backends"))
    try:
        yield backends
    finally:
        backends.close()


def order_slurm_cases_last(items: typing.List[pytest.Item]) -> None:
    """Move the contract suite's Slurm cases to the end, grouped by flavour (one shared pilot at a time)."""

    def flavour(item) -> typing.Optional[str]:
        callspec = getattr(item, "callspec", None)
        name = callspec.params.get("backend_name") if callspec is not None else None
        return name if name in SLURM_CONTRACT_BACKENDS else None

    others = [item for item in items if flavour(item) is None]
    slurm = [item for item in items if flavour(item) is not None]
    slurm.sort(key=lambda item: SLURM_CONTRACT_BACKENDS.index(flavour(item)))  # stable: file order within
    items[:] = others + slurm
