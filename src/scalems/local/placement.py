"""Where a task runs on this machine: which cores it is pinned to, which GPUs it sees.

The limiter (:mod:`scalems.execution.limits`) decides *how many* cores and
GPUs are in use; this module decides *which*. A task that reserved ``c``
cores gets ``c`` core slots of its own, and its processes are pinned to the
CPUs of those slots, so concurrent tasks never share a core (an MPI
launcher's ranks inherit the mask). A task that reserved GPUs gets device
ids nobody else running has, in ``CUDA_VISIBLE_DEVICES`` (and the AMD
equivalents).

A task with several cores or ranks is pinned right after it starts, before
it can start threads or ranks (its program is still being loaded); a
one-core task once it has run for a moment, with all its threads.
``preexec_fn`` would make every spawn several milliseconds slower, and
narrowing the dispatcher thread's own mask around the spawn moved that thread
between CPUs for every task.
"""

from __future__ import annotations

__all__ = ("SlotMap", "detect_gpus", "usable_cpus", "pin", "GPU_VARIABLES")

import os
import typing

#: The variables that name the GPUs a process may use (NVIDIA CUDA, AMD HIP and ROCr).
GPU_VARIABLES = ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES")


def usable_cpus() -> list:
    """The CPUs this process may run on, in order."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def detect_gpus(environ: typing.Mapping[str, str] = os.environ) -> list:
    """Ids of the GPUs this process may use: those the environment names, else those the drivers show.

    NVIDIA GPUs appear under ``/proc/driver/nvidia/gpus``; AMD GPUs as nodes with
    SIMD units in the KFD topology. Reading these costs no process start.
    """
    for name in GPU_VARIABLES:
        value = environ.get(name)
        if value is not None:
            return [item for item in (part.strip() for part in value.split(",")) if item]
    try:
        nvidia = len(os.listdir("/proc/driver/nvidia/gpus"))
    except OSError:
        nvidia = 0
    if nvidia:
        return [str(i) for i in range(nvidia)]
    amd = 0
    nodes = "/sys/class/kfd/kfd/topology/nodes"
    try:
        for node in os.listdir(nodes):
            try:
                with open(os.path.join(nodes, node, "properties")) as fh:
                    if any(line.split()[:1] == ["simd_count"] and int(line.split()[1]) > 0 for line in fh):
                        amd += 1
            except (OSError, ValueError, IndexError):
                continue
    except OSError:
        pass
    return [str(i) for i in range(amd)]


class SlotMap:
    """Numbered slots (cores or GPUs), handed out lowest first and given back when a task ends.

    Slot *i* stands for ``names[i]`` (a CPU or a GPU id); names repeat when the budget
    is larger than the machine (``--cores 8`` on 4 CPUs), and then tasks share.
    """

    __slots__ = ("names", "_free")

    def __init__(self, names: typing.Sequence):
        self.names = list(names)
        self._free = list(range(len(self.names)))

    def take(self, count: int) -> list:
        """*count* free slots (the caller's limiter guarantees there are enough)."""
        if count <= 0:
            return []
        if count > len(self._free):
            raise RuntimeError(f"asked for {count} slots with only {len(self._free)} free: the limiter let too much in")
        taken, self._free = self._free[:count], self._free[count:]
        return taken

    def give(self, slots: typing.Sequence[int]) -> None:
        if slots:
            self._free = sorted(self._free + list(slots))

    def names_of(self, slots: typing.Sequence[int]) -> list:
        return [self.names[i] for i in slots]


def pin(pid: int, cpus: typing.Collection[int]) -> None:
    """Pin every thread of process *pid* to *cpus* (a process that is already gone is left alone)."""
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        threads = [str(pid)]
    for thread in threads:
        try:
            os.sched_setaffinity(int(thread), cpus)
        except (ProcessLookupError, PermissionError):
            pass
