"""Threads, cores and GPUs of tasks on the local backend, seen from inside the tasks."""

import os
import pathlib
import sys

import pytest

import scalems
import scalems.local
from scalems.local.placement import detect_gpus

#: Waits until all its siblings run, then reports what it sees: its OpenMP threads, its CPUs, its GPUs.
PROBE = """
import os, pathlib, sys, time
gate = pathlib.Path(sys.argv[1])
gate.mkdir(exist_ok=True)
(gate / str(os.getpid())).touch()
deadline = time.monotonic() + 60
while len(list(gate.iterdir())) < int(sys.argv[2]) and time.monotonic() < deadline:
    time.sleep(0.02)
time.sleep(0.1)  # all siblings run now, and a one-core task is pinned once it has run for a moment
status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
print(os.environ.get("OMP_NUM_THREADS"), status["Cpus_allowed_list"].strip(), os.environ.get("CUDA_VISIBLE_DEVICES"),
      os.environ.get("HIP_VISIBLE_DEVICES"), sep="|")
sys.stdout.flush()
time.sleep(0.2)  # still running while the others look
"""


def probe(tmp_path, count, **task_options):
    """*count* tasks that run at the same time (each waits for all to start); what each saw."""
    gate = tmp_path / f"gate-{os.urandom(4).hex()}"
    tasks = [
        scalems.executable([sys.executable, "-c", PROBE, str(gate), str(count)], label=f"probe-{gate.name}-{i}", **task_options)
        for i in range(count)
    ]
    return [pathlib.Path(t.result(timeout=120).stdout).read_text().strip().split("|") for t in tasks]


def cpus(text: str) -> set:
    found = set()
    for part in text.split(","):
        low, _, high = part.partition("-")
        found.update(range(int(low), int(high or low) + 1))
    return found


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs a machine with 2 CPUs to pin 2 tasks apart")
def test_concurrent_tasks_get_disjoint_cores_and_threads_per_rank(tmp_path):
    with scalems.local.workflow(directory=tmp_path / "work", cores=2, progress=False):
        seen = probe(tmp_path, 2)
        wide = probe(tmp_path, 1, resources={"cores_per_rank": 2})
        own = probe(tmp_path, 1, env={"OMP_NUM_THREADS": "7"})
    (threads_a, cpus_a, *_), (threads_b, cpus_b, *_) = seen
    assert threads_a == threads_b == "1"
    assert len(cpus(cpus_a)) == len(cpus(cpus_b)) == 1 and not cpus(cpus_a) & cpus(cpus_b)
    assert wide[0][0] == "2" and len(cpus(wide[0][1])) == 2
    assert own[0][0] == "7"  # the task's env wins


def test_no_bind_leaves_tasks_on_every_cpu(tmp_path):
    with scalems.local.workflow(directory=tmp_path / "work", cores=2, bind=False, progress=False):
        (_, allowed, *_), = probe(tmp_path, 1)
    assert cpus(allowed) == os.sched_getaffinity(0)


def test_gpu_tasks_running_together_see_different_devices(tmp_path, monkeypatch):
    for name in ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES"):
        monkeypatch.delenv(name, raising=False)
    with scalems.local.workflow(directory=tmp_path / "work", cores=2, gpus=2, progress=False):
        seen = probe(tmp_path, 2, resources={"gpus_per_rank": 1})
        cpu_only = probe(tmp_path, 1)
    assert sorted(row[2] for row in seen) == sorted(set(row[2] for row in seen))  # distinct
    assert all(row[2] == row[3] and row[2] is not None and "," not in row[2] for row in seen)
    assert cpu_only[0][2] == "None"


def test_gpu_default_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
    assert detect_gpus() == ["2", "5"]
    assert scalems.local.LocalConfiguration().gpus == 2
    with scalems.local.workflow(directory=tmp_path, cores=1, progress=False) as workflow:
        with pytest.raises(scalems.exceptions.ResourceError, match="GPUs"):
            scalems.executable(["true"], resources={"gpus_per_rank": 3})
    assert workflow.closed
