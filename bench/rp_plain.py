"""Plain RADICAL-Pilot baselines for W6: ``python bench/rp_plain.py exe|raptor N SANDBOX``.

``exe``: session, pilot on ``local.localhost``, N ``/bin/true`` executable tasks,
close. bench/run.py times the whole command.

``raptor``: the same, plus a Raptor master and one ``MPIWorker`` (1 rank); one
warm-up ``TASK_FUNCTION`` task, then N no-op function tasks, timed from
submission to the last result (the ``seconds`` field).

Run it with ``HOME``, ``RADICAL_BASE`` and ``TMPDIR`` pointing into a scratch
directory (bench/run.py does) so RP writes nothing outside it. Prints
``BENCH_RESULT {json}``.
"""

import json
import os
import sys
import time

import radical.pilot as rp

# A local.localhost pilot bootstraps its agent from the client's virtual environment, which RP
# finds through VIRTUAL_ENV (scalems.radical sets it the same way); without it the agent is not
# found and the pilot fails at once.
os.environ.setdefault("VIRTUAL_ENV", sys.prefix)


def noop(i):
    return i


def emit(**fields):
    print("BENCH_RESULT " + json.dumps(fields), flush=True)


def _wait(tmgr, tasks, timeout, pilot):
    """Wait for *tasks*; give up at once if the pilot ends (RP would wait for the timeout)."""
    deadline = time.monotonic() + timeout
    uids = [t.uid for t in tasks]
    while time.monotonic() < deadline:
        tmgr.wait_tasks(uids=uids, timeout=2)
        if all(t.state in rp.FINAL for t in tasks):
            break
        if pilot.state in rp.FINAL:
            raise SystemExit(f"the pilot ended in state {pilot.state} before the tasks finished")
    bad = [t for t in tasks if t.state != rp.DONE]
    if bad:
        raise SystemExit(
            f"{len(bad)} of {len(tasks)} tasks did not finish: first {bad[0].uid} in {bad[0].state}"
        )


def main(argv):
    mode, n, sandbox = argv[0], int(argv[1]), argv[2]
    t_start = time.perf_counter()
    marks = {}
    # Keep RP's client session folder out of the current directory (RP puts it in $PWD by default).
    session = rp.Session(cfg={"base": sandbox, "client_sandbox": sandbox})
    try:
        pmgr = rp.PilotManager(session=session)
        tmgr = rp.TaskManager(session=session)
        pilot = pmgr.submit_pilots(
            [
                rp.PilotDescription(
                    {"resource": "local.localhost", "runtime": 10, "cores": 2, "sandbox": sandbox}
                )
            ]
        )[0]
        tmgr.add_pilots(pilot)
        marks["pilot_submitted"] = time.perf_counter() - t_start
        if mode == "exe":
            descriptions = [
                rp.TaskDescription({"executable": "/bin/true", "arguments": [str(i)]}) for i in range(n)
            ]
            t0 = time.perf_counter()
            tasks = tmgr.submit_tasks(descriptions)
            _wait(tmgr, tasks, 900, pilot)
            t1 = time.perf_counter()
        elif mode == "raptor":
            raptor = pilot.submit_raptors([rp.TaskDescription({"mode": rp.RAPTOR_MASTER})])[0]
            raptor.submit_workers(
                [rp.TaskDescription({"mode": rp.RAPTOR_WORKER, "raptor_class": "MPIWorker", "ranks": 1})]
            )

            def describe(i):
                return rp.TaskDescription(
                    {"mode": rp.TASK_FUNCTION, "function": rp.PythonTask(noop, [i], {})}
                )

            warm = raptor.submit_tasks([describe(-1)])
            _wait(tmgr, warm, 600, pilot)
            marks["first_result"] = time.perf_counter() - t_start
            t0 = time.perf_counter()
            tasks = raptor.submit_tasks([describe(i) for i in range(n)])
            _wait(tmgr, tasks, 900, pilot)
            t1 = time.perf_counter()
            values = [t.return_value for t in tasks]
            if values[:3] != [[0], [1], [2]] and values[:3] != [0, 1, 2]:
                raise SystemExit(f"unexpected return values {values[:3]}")
        else:
            raise SystemExit(f"unknown mode {mode!r}")
    finally:
        t_close = time.perf_counter()
        session.close(download=False)
        marks["close"] = time.perf_counter() - t_close
    emit(seconds=t1 - t0, n=n, total=time.perf_counter() - t_start, **marks)


if __name__ == "__main__":
    main(sys.argv[1:])
