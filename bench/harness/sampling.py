"""Taking samples: the systems under test in turn, and how busy the rest of the machine was meanwhile.

The machine is shared with other people's work, so the systems of a workload are run alternately
(A, B, C, A, B, C, ...) and each sample records the share of the CPU that processes outside the
bench used while it ran; a disturbed sample is run again (``--max-foreign``, ``--retries``). Before
each sample the bench waits for the file system to settle (and, with ``--wait-quiet``, for the CPU).
The driver sets ``QUIET`` from the command line.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import time
import typing

from harness.common import BenchError, log


@dataclasses.dataclass
class Impl:
    """One system under test in one workload; ``sample(rep)`` returns ``(value, details)``."""

    key: str
    label: str
    unit: str  # "tasks/s" (higher is better) or "s" (lower is better)
    sample: typing.Callable[[int], tuple]
    unavailable: typing.Optional[str] = None
    values: list = dataclasses.field(default_factory=list)
    details: list = dataclasses.field(default_factory=list)
    background: list = dataclasses.field(default_factory=list)
    error: typing.Optional[str] = None

    @property
    def status(self) -> str:
        if self.unavailable:
            return self.unavailable
        if self.error:
            return f"failed: {self.error}"
        return "ok"

    @property
    def median(self) -> typing.Optional[float]:
        return statistics.median(self.values) if self.values and not self.error else None

    def detail_median(self, name: str) -> typing.Optional[float]:
        values = [d[name] for d in self.details if isinstance(d.get(name), (int, float))]
        return statistics.median(values) if values and not self.error else None


def _cpu_times() -> tuple:
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields), idle


def background_busy(window: float = 0.3) -> typing.Optional[float]:
    """Share of the machine's CPU time (0..1) used by other processes during *window* s (nothing of ours runs)."""
    try:
        total0, idle0 = _cpu_times()
        time.sleep(window)
        total1, idle1 = _cpu_times()
    except (OSError, ValueError, IndexError):
        return None
    total = total1 - total0
    return (total - (idle1 - idle0)) / total if total > 0 else None


QUIET = {"wait": 0.0, "threshold": 0.25, "max_foreign": 0.3, "retries": 2, "io_wait": 15.0, "io_threshold": 0.02}
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
NCPU = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _io_stall_us() -> typing.Optional[int]:
    """Microseconds in which some task waited for I/O since boot (Linux PSI), or None without PSI."""
    try:
        with open("/proc/pressure/io") as fh:
            return int(fh.readline().rsplit("total=", 1)[1])
    except (OSError, ValueError, IndexError):
        return None


def io_stalled(window: float = 0.3) -> typing.Optional[float]:
    """Share of *window* (0..1) in which some task waited for I/O; nothing of ours runs meanwhile."""
    before = _io_stall_us()
    if before is None:
        return None
    time.sleep(window)
    after = _io_stall_us()
    return None if after is None else min(1.0, (after - before) / (window * 1e6))


def wait_for_io_quiet() -> typing.Optional[float]:
    """Wait (up to 15 s) until tasks waited for I/O in under 2 % of a window; the last share seen."""
    deadline = time.monotonic() + QUIET["io_wait"]
    stall = io_stalled()
    while stall is not None and stall > QUIET["io_threshold"] and time.monotonic() < deadline:
        stall = io_stalled(1.0)
    return stall


def wait_for_quiet() -> typing.Optional[float]:
    """Background CPU share before a sample, after waiting for the file system to settle.

    Deleting a large work directory keeps the disk busy (discards, journal) for
    seconds afterwards, and file-system latency then multiplies the store's
    fixed costs. Before each sample this waits, up to 15 s, until tasks waited
    for I/O in under 2 % of a 0.3 s window (Linux PSI). With ``--wait-quiet S``
    it also waits up to S s for other processes' CPU use to drop below 25 %.
    """
    wait_for_io_quiet()
    busy = background_busy()
    deadline = time.monotonic() + QUIET["wait"]
    while busy is not None and busy > QUIET["threshold"] and time.monotonic() < deadline:
        time.sleep(2)
        busy = background_busy(1.0)
    return busy


class ForeignMeter:
    """CPU that processes other than ours used while a sample ran, as a share of the machine (0..1).

    Machine-wide busy time comes from /proc/stat; ours is this process plus every descendant it has
    waited for (``getrusage``). Processes that detach from our tree (RADICAL-Pilot agents) count as foreign.
    """

    def __enter__(self):
        self.t0 = time.monotonic()
        self.ours0 = self._ours()
        try:
            self.cpu0 = _cpu_times()
        except (OSError, ValueError, IndexError):
            self.cpu0 = None
        return self

    @staticmethod
    def _ours() -> float:
        import resource

        total = 0.0
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
            usage = resource.getrusage(who)
            total += usage.ru_utime + usage.ru_stime
        return total

    def __exit__(self, *exc):
        elapsed = time.monotonic() - self.t0
        self.share = None
        if self.cpu0 is None or elapsed <= 0:
            return False
        try:
            total1, idle1 = _cpu_times()
        except (OSError, ValueError, IndexError):
            return False
        busy = ((total1 - self.cpu0[0]) - (idle1 - self.cpu0[1])) / CLK_TCK
        foreign = max(0.0, busy - (self._ours() - self.ours0))
        self.share = min(1.0, foreign / (elapsed * NCPU))
        return False


def alternate(workload: str, impls: list, reps: int, *, retry_foreign: bool = True) -> None:
    """Run the available *impls* in turn, *reps* rounds: A, B, C, A, B, C, ...

    A sample during which other processes used more than ``--max-foreign`` of the machine is run
    again (up to ``--retries`` times; the last try is kept either way, with its foreign share).
    """
    for rep in range(reps):
        for impl in impls:
            if impl.unavailable or impl.error:
                continue
            for attempt in range(QUIET["retries"] + 1):
                before = wait_for_quiet()
                try:
                    with ForeignMeter() as meter:
                        value, details = impl.sample(rep)
                except BenchError as error:
                    impl.error = str(error)
                    log(f"{workload} {impl.key}: {impl.error}")
                    break
                foreign = meter.share
                shown = "?" if foreign is None else f"{100 * foreign:.0f}%"
                noisy = foreign is not None and foreign > QUIET["max_foreign"]
                if retry_foreign and noisy and attempt < QUIET["retries"]:
                    log(
                        f"{workload} rep {rep + 1}/{reps} {impl.key}: {value:.4g} {impl.unit} discarded: other "
                        f"processes used {shown} of the machine meanwhile; again"
                    )
                    continue
                impl.values.append(value)
                impl.details.append({**details, "foreign_cpu": foreign, "background_before": before})
                impl.background.append(foreign)
                log(
                    f"{workload} rep {rep + 1}/{reps} {impl.key}: {value:.4g} {impl.unit} "
                    f"(other processes: {shown} of the machine)"
                )
                break
