"""Task environments (scalems.radical.task_environment): the wheel, the key, the options, and the
version check on a real local.localhost pilot."""

from __future__ import annotations

import importlib.metadata
import os
import pathlib
import subprocess
import sys
import zipfile

import pytest

pytest.importorskip("radical.pilot")

import scalems.radical  # noqa: E402
from cli import run_module  # noqa: E402
from scalems.exceptions import ConfigurationError  # noqa: E402
from scalems.radical import task_environment  # noqa: E402
from task_env_helpers import make_venv, mismatched_venv, pip_install_offline, touching_workflow  # noqa: E402

SCALEMS_VERSION = importlib.metadata.version("scalems")


def test_wheel_installs_offline_and_imports_the_clients_scalems(tmp_path):
    wheel, digest = task_environment.build_wheel(tmp_path / "wheel")
    assert wheel.name == f"scalems-{SCALEMS_VERSION}-py3-none-any.whl"
    again, same = task_environment.build_wheel(tmp_path / "again")
    assert same == digest and again.read_bytes() == wheel.read_bytes(), "the same files must give the same wheel"
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert "scalems/radical/task_environment.py" in names
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]

    python = make_venv(tmp_path / "venv")
    done = pip_install_offline(python, wheel)
    assert done.returncode == 0, done.stdout + done.stderr
    probe = subprocess.run(
        [str(python), "-c", "import importlib.metadata, scalems; print(scalems.__file__); print(importlib.metadata.version('scalems'))"],
        capture_output=True, text=True, cwd=tmp_path, env={"PATH": os.environ["PATH"]}, timeout=60,
    )
    assert probe.returncode == 0, probe.stderr
    location, version = probe.stdout.split()
    assert location.startswith(str(tmp_path / "venv")), location
    assert version == SCALEMS_VERSION
    assert (tmp_path / "venv" / "bin" / "scalems_rp_master").is_file(), "the console script of the Raptor master"


def test_key_names_the_whole_version_set():
    versions = task_environment.client_versions()
    base = task_environment.environment_key(versions, "digest", "dill==0.4\n")
    assert len(base) == 16 and base == task_environment.environment_key(dict(versions), "digest", "dill==0.4\n")
    assert task_environment.environment_key(versions, "digest", "dill==0.4\nnumpy\n") != base
    assert task_environment.environment_key(versions, "other code", "dill==0.4\n") != base
    assert task_environment.environment_key({**versions, "python": "3.99"}, "digest", "dill==0.4\n") != base


def test_requirements_hold_the_clients_pins_and_the_extras(tmp_path):
    requirements = tmp_path / "req.txt"
    requirements.write_text("numpy>=1.20\n")
    config = scalems.radical.configuration(
        ["--resource", "local.localhost", "--task-requirements", str(requirements), "--task-pip", "pyyaml"]
    )
    assert config.target_venv is None, "extra requirements on local.localhost: scalems provisions"
    text = task_environment.requirements_text(config, task_environment.client_versions())
    lines = text.splitlines()
    assert f"dill=={importlib.metadata.version('dill')}" in lines
    assert f"radical.pilot=={importlib.metadata.version('radical.pilot')}" in lines
    assert "numpy>=1.20" in lines and "pyyaml" in lines


def test_options():
    assert scalems.radical.configuration(["--resource", "local.localhost"]).target_venv == sys.prefix
    with pytest.raises(ConfigurationError, match="--task-pip .*--venv"):
        scalems.radical.configuration(["--resource", "local.localhost", "--venv", sys.prefix, "--task-pip", "numpy"])
    with pytest.raises(ConfigurationError, match="--task-requirements .* is not a readable file"):
        scalems.radical.configuration(["--resource", "local.localhost", "--task-requirements", "/no/such/file"])
    assert not task_environment.needs_version_check(scalems.radical.configuration(["--resource", "local.localhost"]))


def test_differences_name_both_sides():
    client = {"python": "3.11", "scalems": "0.1.0", "dill": "0.4.1", "radical.pilot": "1.103.2"}
    task = {"python": "3.11", "scalems": "0.0.1", "dill": "0.4.1", "radical.pilot": None}
    assert task_environment.compare_versions(client, task) == [
        "scalems: client 0.1.0, task environment 0.0.1",
        "radical.pilot: client 1.103.2, task environment not installed",
    ]


@pytest.mark.radical
@pytest.mark.slow
def test_mismatched_venv_fails_before_any_task(tmp_path):
    venv = mismatched_venv(tmp_path / "envs")
    work = tmp_path / "work"
    work.mkdir()
    ran = tmp_path / "ran"
    script = touching_workflow(work, ran)
    done = run_module(
        "scalems.radical", "--resource", "local.localhost", "--venv", venv, "--pilot-option", "cores=2",
        "--pilot-option", "runtime=10", script, cwd=work, timeout=600,
    )
    assert done.returncode == 1, done.stderr
    assert "the backend could not start: SoftwareCompatibilityError: the task environment" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert f"scalems: client {SCALEMS_VERSION}, task environment 0.0.1" in done.stderr, done.stderr
    assert "radical.pilot: client" in done.stderr and "task environment not installed" in done.stderr
    assert str(venv) in done.stderr and "drop --venv" in done.stderr
    assert not ran.exists(), "a task of the workflow ran"
    assert "1 task(s) could not run because of it." in done.stderr
    assert not pathlib.Path(work / "scalems_tasks" / "touch" / "stdout").exists()
