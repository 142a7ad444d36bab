"""One measurement per process: ``python bench/measure.py KIND N [WORKDIR]``.

Prints one line ``BENCH_RESULT {json}`` on stdout. bench/run.py starts a fresh
process for every sample so that no system under test inherits warm caches,
threads or memory from another one, and so that peak RSS is per run.

Timings use ``time.perf_counter()`` and exclude interpreter start-up and
imports unless the field name says otherwise. Peers (ProcessPoolExecutor,
Parsl, Dask) are measured *warm*: their workers are started and have run one
task before the clock starts. scalems is measured from the start of the
workflow manager (which starts its warm workers lazily, on the first function
task) to the moment every task is done and the manager is closed.
"""

from __future__ import annotations

import json
import os
import pathlib
import resource
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import benchfuncs  # noqa: E402


def emit(**fields) -> None:
    print("BENCH_RESULT " + json.dumps(fields), flush=True)


def peak_rss_kib() -> dict:
    """Peak resident set size of this process, from getrusage and /proc (KiB)."""
    out = {"ru_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                out["vmhwm_kib"] = int(line.split()[1])
    except OSError:
        pass
    return out


# ---- scalems ---------------------------------------------------------------------------------------
def import_scalems():
    """Import scalems with everything its public names load on first use (PEP 562).

    Without this, the first ``scalems.submit`` inside a timed region would import the
    workflow manager and the store, and the clock would count start-up (which W5
    measures) as workflow time.
    """
    import scalems
    import scalems.commands  # noqa: F401
    import scalems.local
    import scalems.workflow.manager  # noqa: F401

    return scalems


def scalems_executables(n: int, workdir: str) -> None:
    scalems = import_scalems()

    t0 = time.perf_counter()
    with scalems.local.workflow(directory=workdir, cores=2, progress=False) as wf:
        t_started = time.perf_counter()
        for i in range(n):
            scalems.executable(["/bin/true", str(i)])  # distinct argv: 1000 distinct tasks
        t_added = time.perf_counter()
    t1 = time.perf_counter()
    done = wf.counts["done"]
    if done != n or wf.counts["failed"]:
        raise SystemExit(f"expected {n} done, got {dict(wf.counts)}")
    emit(seconds=t1 - t0, start=t_started - t0, add=t_added - t_started, n=n)


def scalems_functions(n: int, workdir: str, func: str = "noop") -> None:
    scalems = import_scalems()

    counter = os.path.join(workdir, "tally.count")
    t0 = time.perf_counter()
    with scalems.local.workflow(directory=workdir, cores=2, progress=False) as wf:
        t_started = time.perf_counter()
        if func == "noop":
            tasks = [scalems.submit(benchfuncs.noop, i) for i in range(n)]
        else:
            tasks = [scalems.submit(benchfuncs.tally, i, counter) for i in range(n)]
        t_added = time.perf_counter()
    t1 = time.perf_counter()
    counts = dict(wf.counts)
    if counts.get("done") != n or counts.get("failed"):
        raise SystemExit(f"expected {n} done, got {counts}")
    emit(
        seconds=t1 - t0,
        start=t_started - t0,
        add=t_added - t_started,
        n=n,
        counts=counts,
        from_cache_all=all(t.from_cache for t in tasks),
        from_cache_any=any(t.from_cache for t in tasks),
        **peak_rss_kib(),
    )


def scalems_rerun(n: int, workdir: str) -> None:
    """W3: re-run the finished tally workflow; count every process this run starts."""
    import subprocess

    spawned = [0]
    original_init = subprocess.Popen.__init__

    def counting_init(self, *args, **kwargs):
        spawned[0] += 1
        return original_init(self, *args, **kwargs)

    subprocess.Popen.__init__ = counting_init  # asyncio subprocesses and scalems workers use Popen
    os.register_at_fork(after_in_parent=lambda: spawned.__setitem__(0, spawned[0] + 1))
    counter = os.path.join(workdir, "tally.count")
    calls_before = os.path.getsize(counter) if os.path.exists(counter) else 0
    scalems = import_scalems()

    t0 = time.perf_counter()
    with scalems.local.workflow(directory=workdir, cores=2, progress=False) as wf:
        tasks = [scalems.submit(benchfuncs.tally, i, counter) for i in range(n)]
    t1 = time.perf_counter()
    calls_after = os.path.getsize(counter) if os.path.exists(counter) else 0
    emit(
        seconds=t1 - t0,
        n=n,
        counts=dict(wf.counts),
        from_cache_all=all(t.from_cache for t in tasks),
        processes_started=spawned[0],
        function_calls=calls_after - calls_before,
        calls_before=calls_before,
    )


# ---- raw asyncio -------------------------------------------------------------------------------------
def asyncio_executables(n: int, pidfd: bool = False) -> None:
    import asyncio
    import subprocess

    async def main():
        if pidfd:
            watcher = asyncio.PidfdChildWatcher()
            asyncio.set_child_watcher(watcher)
            watcher.attach_loop(asyncio.get_running_loop())
        gate = asyncio.Semaphore(2)

        async def one():
            async with gate:
                proc = await asyncio.create_subprocess_exec(
                    "/bin/true",
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                return await proc.wait()

        t0 = time.perf_counter()
        codes = await asyncio.gather(*(one() for _ in range(n)))
        t1 = time.perf_counter()
        assert not any(codes)
        return t1 - t0

    if pidfd:
        import warnings

        warnings.simplefilter("ignore", DeprecationWarning)
    emit(seconds=asyncio.run(main()), n=n)


# ---- ProcessPoolExecutor -------------------------------------------------------------------------------
def ppe_functions(n: int) -> None:
    import concurrent.futures

    with concurrent.futures.ProcessPoolExecutor(2) as pool:
        list(pool.map(benchfuncs.noop, range(4)))  # warm: both workers up and importing benchfuncs
        t0 = time.perf_counter()
        futures = [pool.submit(benchfuncs.noop, i) for i in range(n)]
        concurrent.futures.wait(futures)
        t1 = time.perf_counter()
        assert all(f.result() == i for i, f in enumerate(futures))
    emit(seconds=t1 - t0, n=n)


# ---- Parsl -------------------------------------------------------------------------------------------------
def parsl_config(run_dir: str):
    from parsl.config import Config
    from parsl.executors import HighThroughputExecutor
    from parsl.providers import LocalProvider

    return Config(
        executors=[
            HighThroughputExecutor(
                label="htex_local",
                max_workers_per_node=2,
                encrypted=False,
                provider=LocalProvider(init_blocks=1, min_blocks=1, max_blocks=1),
            )
        ],
        strategy_period=0.2,
        run_dir=run_dir,
    )


def parsl_run(n: int, kind: str) -> None:
    import logging

    import parsl
    from parsl import bash_app, python_app

    logging.getLogger("parsl").setLevel(logging.WARNING)
    run_dir = os.path.join(SCRATCH, "parsl-runinfo")
    t_boot = time.perf_counter()
    dfk = parsl.load(parsl_config(run_dir))
    try:
        if kind == "bash":

            @bash_app
            def true_app(i):
                return "/bin/true"

            app = true_app
        else:
            app = python_app(benchfuncs.noop)
        app(-1).result()  # warm: the worker pool is up
        first = time.perf_counter() - t_boot
        t0 = time.perf_counter()
        futures = [app(i) for i in range(n)]
        for f in futures:
            f.result()
        t1 = time.perf_counter()
    finally:
        dfk.cleanup()
        parsl.clear()
    emit(seconds=t1 - t0, n=n, first_result=first)


# ---- Dask --------------------------------------------------------------------------------------------------
def dask_run(n: int, kind: str) -> None:
    import logging

    from distributed import Client, LocalCluster

    t_boot = time.perf_counter()
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
            local_directory=os.path.join(SCRATCH, "dask"),
        ) as cluster,
        Client(cluster) as client,
    ):
        client.wait_for_workers(2)
        func = benchfuncs.run_true if kind == "bash" else benchfuncs.noop
        client.gather(client.map(func, [-1, -2]))  # warm: both workers imported benchfuncs
        first = time.perf_counter() - t_boot
        t0 = time.perf_counter()
        if kind == "bash":
            futures = [client.submit(func, i) for i in range(n)]
        else:
            futures = client.map(func, range(n))
        client.gather(futures)
        t1 = time.perf_counter()
        del futures
    emit(seconds=t1 - t0, n=n, first_result=first)


def become_subreaper() -> bool:
    """Adopt our orphaned descendants (Parsl's worker pool detaches), so their CPU time is reaped into ours.

    bench/run.py tells other people's processes from ours by ``getrusage(RUSAGE_CHILDREN)``; a descendant
    that is reparented to init would count as foreign load.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def reap_descendants(grace: float = 10.0) -> int:
    """Wait for every (adopted) child to exit, SIGKILL those still running after *grace* s; return how many were."""
    import signal

    deadline = time.monotonic() + grace
    killed = 0
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return killed
        if pid:
            continue
        # multiprocessing's resource tracker exits only when we do: do not wait for it.
        if all(_is_resource_tracker(child) for child in _children()):
            return killed
        if time.monotonic() > deadline:
            for child in _children():
                try:
                    os.kill(child, signal.SIGKILL)
                    killed += 1
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + grace
        time.sleep(0.05)


def _is_resource_tracker(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return b"resource_tracker" in fh.read()
    except OSError:
        return True  # gone


def _children() -> list:
    me, found = os.getpid(), []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    if int(fh.read().rsplit(")", 1)[1].split()[1]) == me:
                        found.append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    return found


#: Scratch space of this process (Parsl's run_dir, Dask's local_directory), removed at the end.
SCRATCH = ""


def main(argv) -> None:
    global SCRATCH
    import shutil

    kind, n = argv[0], int(argv[1])
    SCRATCH = tempfile.mkdtemp(prefix="scalems-bench-measure-")
    # Whatever the systems under test put in TMPDIR (multiprocessing's pymp-*, dask-scratch-space) goes too.
    os.environ["TMPDIR"] = SCRATCH
    tempfile.tempdir = None
    try:
        if kind.startswith(("parsl", "dask")):
            become_subreaper()
            try:
                run_measurement(kind, n, argv[2:])
            finally:
                leftover = reap_descendants()
                if leftover:
                    print(
                        f"measure.py: killed {leftover} descendant process(es) still running", file=sys.stderr
                    )
        else:
            run_measurement(kind, n, argv[2:])
    finally:
        shutil.rmtree(SCRATCH, ignore_errors=True)


def run_measurement(kind: str, n: int, rest: list) -> None:
    if kind == "scalems-exe":
        scalems_executables(n, rest[0])
    elif kind == "scalems-fn":
        scalems_functions(n, rest[0], "noop")
    elif kind == "scalems-tally":
        scalems_functions(n, rest[0], "tally")
    elif kind == "scalems-rerun":
        scalems_rerun(n, rest[0])
    elif kind == "asyncio-exe":
        asyncio_executables(n)
    elif kind == "asyncio-pidfd-exe":
        asyncio_executables(n, pidfd=True)
    elif kind == "ppe-fn":
        ppe_functions(n)
    elif kind == "parsl-exe":
        parsl_run(n, "bash")
    elif kind == "parsl-fn":
        parsl_run(n, "python")
    elif kind == "dask-exe":
        dask_run(n, "bash")
    elif kind == "dask-fn":
        dask_run(n, "python")
    else:
        raise SystemExit(f"unknown measurement {kind!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
