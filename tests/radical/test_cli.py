"""``python -m scalems.radical`` as a user runs it, on a real local.localhost pilot.

Each test starts its own session (20-40 s), so only what needs the whole
command line is tested here; the contract suite covers the rest on the shared pilot.
"""

from __future__ import annotations


import pytest

pytest.importorskip("radical.pilot")

from cli import EXAMPLES, run_module  # noqa: E402

pytestmark = [pytest.mark.radical, pytest.mark.slow]

RP_OPTIONS = ["--resource", "local.localhost", "--pilot-option", "cores=2", "--pilot-option", "runtime=10"]


def local_run(example, *args, cwd):
    cwd.mkdir()
    done = run_module("scalems.local", "--cores", "2", EXAMPLES / example, *args, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return done


def test_echo_example_then_rerun_runs_nothing(tmp_path):
    done = run_module("scalems.radical", *RP_OPTIONS, EXAMPLES / "basic" / "echo.py", "hello", "world", cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr
    stdout = tmp_path / "scalems_tasks" / "echo" / "stdout"
    assert stdout.read_text() == "hello world\n"
    assert str(stdout) in done.stderr
    sessions = set((tmp_path / "scalems_radical").iterdir())
    again = run_module("scalems.radical", *RP_OPTIONS, EXAMPLES / "basic" / "echo.py", "hello", "world", cwd=tmp_path, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "1 tasks: 1 done (1 from earlier runs)" in again.stderr
    assert set((tmp_path / "scalems_radical").iterdir()) == sessions, "a fully cached re-run started an RP session"
    assert again.stdout == done.stdout


@pytest.mark.parametrize("raptor", [False, True], ids=["scalems.call", "raptor"])
def test_pipeline_example_matches_local(tmp_path, raptor):
    expected = local_run("pipeline/pipeline.py", "6", cwd=tmp_path / "local")
    options = RP_OPTIONS + (["--enable-raptor"] if raptor else [])
    (tmp_path / "radical").mkdir()
    done = run_module("scalems.radical", *options, EXAMPLES / "pipeline" / "pipeline.py", "6", cwd=tmp_path / "radical", timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.replace(str(tmp_path / "radical"), "W") == expected.stdout.replace(str(tmp_path / "local"), "W")
    report = tmp_path / "radical" / "scalems_tasks" / "report" / "report.txt"
    assert report.read_text() == "count=6 sum=21 mean=3.5\n"


def test_ensemble_example_matches_local(tmp_path):
    expected = local_run("ensemble/ensemble.py", "5", cwd=tmp_path / "local")
    (tmp_path / "radical").mkdir()
    done = run_module("scalems.radical", *RP_OPTIONS, EXAMPLES / "ensemble" / "ensemble.py", "5", cwd=tmp_path / "radical", timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout == expected.stdout
    for member in range(5):
        local = (tmp_path / "local" / "scalems_tasks" / f"member-{member}" / "energy.dat").read_text()
        remote = (tmp_path / "radical" / "scalems_tasks" / f"member-{member}" / "energy.dat").read_text()
        assert local == remote


def test_bad_pilot_options_fail_before_any_session(tmp_path):
    for option, expected in (("nosuchkey=1", "nosuchkey"), ("cores=two", "cores")):
        done = run_module(
            "scalems.radical", "--resource", "local.localhost", "--pilot-option", option, EXAMPLES / "basic" / "echo.py",
            cwd=tmp_path, timeout=120,
        )
        assert done.returncode == 2
        assert expected in done.stderr
    assert not (tmp_path / "scalems_radical").exists()
    unknown = run_module("scalems.radical", "--resource", "nowhere.nohost", EXAMPLES / "basic" / "echo.py", cwd=tmp_path, timeout=120)
    assert unknown.returncode == 2 and "radical-pilot-resources" in unknown.stderr


def test_interrupted_run_leaves_no_rp_processes(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from cli import write_script
    from scalems.execution.processes import processes_marked

    marker = tmp_path / "started"
    script = write_script(
        tmp_path,
        "long.py",
        f"""
        import scalems
        @scalems.app
        def main():
            scalems.executable(["sh", "-c", "touch {marker}; sleep 300"], label="long")
        """,
    )
    runner = subprocess.Popen(
        [sys.executable, "-m", "scalems.radical", *RP_OPTIONS, str(script)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not marker.exists():
            assert runner.poll() is None, runner.communicate()
            assert time.monotonic() < deadline, "the task never started"
            time.sleep(0.1)
        runner.send_signal(signal.SIGINT)
        out, err = runner.communicate(timeout=180)
    finally:
        if runner.poll() is None:
            runner.kill()
    assert runner.returncode == 130, err
    # One session; two if RP hung while setting up the first and scalems replaced it.
    sessions = [path.name for path in (tmp_path / "scalems_radical").glob("rp.session.*")]
    assert 1 <= len(sessions) <= 2, sessions
    assert not processes_marked([sid.encode() for sid in sessions]), "RP processes were left behind"
