"""The Raptor pool sized to the pilot, through ``python -m scalems.radical --enable-raptor`` on local.localhost.

A 4-core pilot holds the master and up to 3 one-core workers. Workflow scripts run
as a user runs them; what they print (worker pids, a crash marker file) is the evidence.
"""

from __future__ import annotations

import pytest

pytest.importorskip("radical.pilot")
pytest.importorskip("mpi4py")

from cli import run_module, write_script  # noqa: E402

pytestmark = [pytest.mark.radical, pytest.mark.slow]

CORES = 4
RP_OPTIONS = [
    "--resource",
    "local.localhost",
    "--enable-raptor",
    "--pilot-option",
    f"cores={CORES}",
    "--pilot-option",
    "runtime=10",
]


def test_function_calls_use_as_many_workers_as_the_cores_allow(tmp_path):
    # 12 calls of 2 s each: more than one worker's share, so the pool grows to cores - 1 workers
    # (the master holds the last core); each call returns the pid of the worker that ran it.
    script = write_script(
        tmp_path,
        "spread.py",
        """
        import os, time
        import scalems

        def nap_pid(n):
            time.sleep(2)
            return os.getpid()

        @scalems.app
        def main():
            calls = [scalems.function_task(nap_pid, args=(n,), label=f"nap-{n}") for n in range(12)]
            pids = [call.result() for call in calls]
            print("workers:", len(set(pids)))
            print("client pid among them:", os.getpid() in pids)
        """,
    )
    done = run_module("scalems.radical", *RP_OPTIONS, script, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"workers: {CORES - 1}\n" in done.stdout, done.stdout + done.stderr
    assert "client pid among them: False" in done.stdout


def test_a_call_that_kills_its_worker_fails_once_and_a_replacement_runs_later_calls(tmp_path):
    marker = tmp_path / "ran.txt"
    script = write_script(
        tmp_path,
        "crash.py",
        f"""
        import os, time
        import scalems

        def die():
            with open({str(marker)!r}, "a") as fh:
                fh.write("ran\\n")
            os._exit(3)

        def where(n):
            time.sleep(0.5)
            # In a Raptor worker the call's task id is one of the master's (scalems.raptor.*);
            # a call run as a task of its own is a scalems.task.*.
            return os.environ.get("RP_TASK_ID", "")

        @scalems.app
        def main():
            first = scalems.function_task(where, args=(0,), label="before")
            first.result()
            doomed = scalems.function_task(die, label="die")
            others = [scalems.function_task(where, args=(n,), label=f"other-{{n}}") for n in range(1, 7)]
            print("doomed:", type(doomed.exception()).__name__, str(doomed.exception()).splitlines()[0])
            print("others in workers:", all(task.result().startswith("scalems.raptor.") for task in others))
            later = scalems.function_task(where, args=(99,), label="later")
            print("later in a worker:", later.result().startswith("scalems.raptor."))
            print("workers:", first.result(), later.result())
        """,
    )
    done = run_module("scalems.radical", *RP_OPTIONS, script, cwd=tmp_path, timeout=600)
    output = done.stdout + done.stderr
    assert "doomed: TaskFailedError" in done.stdout, output
    assert "while running 'die'" in done.stdout and "exit status 3" in done.stdout, output
    assert "others in workers: True" in done.stdout, output
    assert "later in a worker: True" in done.stdout, output
    # The crashing call ran exactly once: not again as a separate RP task.
    assert marker.read_text() == "ran\n"
    assert done.returncode != 0  # the run reports its failed task
