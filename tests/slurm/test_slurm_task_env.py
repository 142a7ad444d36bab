"""Task environments on ``local.slurm``: provisioned by scalems when no ``--venv`` is given, reused
by later sessions, and checked against the client before any task runs.

The first test creates the environment at the resource (pip installs radical.pilot from PyPI into a
fresh venv: about a minute, once per test run); it lives in this test run's temporary HOME
(``$HOME/radical.pilot.sandbox/scalems-env-<key>``).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import pathlib
import re
import sys

import pytest

pytest.importorskip("radical.pilot")

from cli import run_module, write_script  # noqa: E402
from task_env_helpers import mismatched_venv, touching_workflow  # noqa: E402

pytestmark = [pytest.mark.slurm, pytest.mark.radical, pytest.mark.slow]

#: No --venv: scalems provisions the task environment.
RP_OPTIONS = ["--resource", "local.slurm", "--pilot-option", "runtime=15", "--log-level", "INFO"]
SCALEMS_VERSION = importlib.metadata.version("scalems")

WHERE = """
import scalems

def where():
    import importlib.metadata, sys
    return json.dumps([sys.prefix, importlib.metadata.version("scalems")])

@scalems.app
def main():
    print("RESULT", scalems.function_task(where, label="where").result())
"""


def run_where(work: pathlib.Path, slurm):
    work.mkdir()
    script = write_script(work, "where.py", "import json\n" + WHERE)
    done = run_module("scalems.radical", *RP_OPTIONS, script, cwd=work, timeout=900, env=slurm.env)
    assert done.returncode == 0, done.stderr
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    prefix, version = json.loads(line[len("RESULT "):])
    return done.stderr, prefix, version


def test_function_task_runs_in_a_provisioned_environment_that_the_next_session_reuses(slurm_run, tmp_path):
    slurm = slurm_run
    log, prefix, version = run_where(tmp_path / "first", slurm)
    assert os.path.realpath(prefix) != os.path.realpath(sys.prefix), "the task ran in the client's environment"
    assert version == SCALEMS_VERSION
    root = pathlib.Path(os.environ["HOME"]) / "radical.pilot.sandbox"
    assert re.fullmatch(re.escape(str(root)) + r"/scalems-env-[0-9a-f]{16}", prefix), prefix
    marker = pathlib.Path(prefix) / "scalems-env-ready.json"
    assert marker.is_file()
    # Created in this session, or (when another test of this run made it first) reused.
    assert f"creating the task environment {prefix}" in log or f"reusing the task environment {prefix}" in log, log
    assert f"task environment {prefix} matches the client" in log, log
    made = marker.stat().st_mtime_ns

    log, again, version = run_where(tmp_path / "second", slurm)
    assert (again, version) == (prefix, SCALEMS_VERSION)
    assert f"reusing the task environment {prefix} (created " in log, log
    assert "creating the task environment" not in log, log
    assert marker.stat().st_mtime_ns == made, "the environment was built again"


def test_mismatched_venv_fails_before_any_task(slurm_run, tmp_path):
    slurm = slurm_run
    venv = mismatched_venv(tmp_path / "envs")
    work = tmp_path / "work"
    work.mkdir()
    ran = tmp_path / "ran"
    script = touching_workflow(work, ran)
    done = run_module(
        "scalems.radical", "--resource", "local.slurm", "--venv", venv, "--pilot-option", "runtime=10",
        script, cwd=work, timeout=600, env=slurm.env,
    )
    assert done.returncode == 1, done.stderr
    assert "the backend could not start: SoftwareCompatibilityError: the task environment" in done.stderr, done.stderr
    assert f"scalems: client {SCALEMS_VERSION}, task environment 0.0.1" in done.stderr, done.stderr
    assert str(venv) in done.stderr
    assert not ran.exists(), "a task of the workflow ran"


def test_failed_creation_names_the_environment_and_pips_complaint(slurm_run, tmp_path):
    slurm = slurm_run
    work = tmp_path / "work"
    work.mkdir()
    ran = tmp_path / "ran"
    script = touching_workflow(work, ran)
    missing = "scalems-test-no-such-distribution"
    done = run_module(
        "scalems.radical", *RP_OPTIONS, "--task-pip", missing, script, cwd=work, timeout=900, env=slurm.env
    )
    assert done.returncode == 1, done.stderr
    found = re.search(r"SoftwareCompatibilityError: scalems could not create the task environment (\S+) ", done.stderr)
    assert found, done.stderr
    path = pathlib.Path(found.group(1))
    assert path.parent == pathlib.Path(os.environ["HOME"]) / "radical.pilot.sandbox"
    assert f"No matching distribution found for {missing}" in done.stderr, done.stderr
    assert not path.exists(), "a half-built environment was left for later sessions"
    assert pathlib.Path(f"{path}.log").is_file()
    assert not ran.exists()


def test_raptor_worker_runs_in_the_provisioned_environment(slurm_run, tmp_path):
    slurm = slurm_run
    work = tmp_path / "work"
    work.mkdir()
    script = write_script(work, "where.py", "import json\n" + WHERE)
    done = run_module(
        "scalems.radical", *RP_OPTIONS, "--enable-raptor", script, cwd=work, timeout=900, env=slurm.env
    )
    assert done.returncode == 0, done.stderr
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    prefix, version = json.loads(line[len("RESULT "):])
    assert pathlib.Path(prefix).name.startswith("scalems-env-") and version == SCALEMS_VERSION
    assert "Submitted scalems Raptor master" in done.stderr, done.stderr
