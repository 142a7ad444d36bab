"""Tests on the Slurm cluster: each leaves no job, no process and no file outside its folders.

The cluster and the ``local.slurm`` resource config come from the fixtures in
``tests/slurm_shared.py`` (``slurm_cluster``, ``local_slurm``), shared with the contract suite.
"""

from __future__ import annotations

import typing

import pytest

from slurm_helpers import SlurmCluster, left_outside, outside_snapshot, processes_with, wait_for


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
