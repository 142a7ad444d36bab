"""Command line and configuration of scalems.radical, and the task descriptions it makes (no RP session)."""

from __future__ import annotations

import os
import pathlib
import shlex
import subprocess
import sys

import pytest
from rp_jobs import executable_job

rp = pytest.importorskip("radical.pilot")

import scalems.radical  # noqa: E402
from scalems.exceptions import ConfigurationError, MissingDependencyError  # noqa: E402
from scalems.execution import FunctionJob, InputFile, Resources  # noqa: E402
from scalems.radical import RuntimeConfiguration  # noqa: E402
from scalems.radical.runtime_configuration import get_pre_exec, known_resources, parse_pilot_option  # noqa: E402
from scalems.radical.task import PathAliases, describe_executable, describe_function  # noqa: E402

BASE = ["--resource", "local.localhost"]


def parse(*options):
    return scalems.radical.parser.parse_args([*options, "script.py"])


def test_pilot_options_are_typed():
    args = parse(*BASE, "--pilot-option", "cores=2", "--pilot-option", "runtime=10")
    config = scalems.radical.configuration(args)
    assert config.rp_resource_params == {"cores": 2, "runtime": 10}
    assert isinstance(config.rp_resource_params["cores"], int)
    description = config.pilot_description()
    assert description["runtime"] == 10 and description["resource"] == "local.localhost"
    assert description["exit_on_error"] is False
    assert parse_pilot_option("cleanup=true") == ("cleanup", True)
    assert parse_pilot_option("queue=debug") == ("queue", "debug")
    assert parse_pilot_option("app_comm=a_queue,b_pubsub") == ("app_comm", ["a_queue", "b_pubsub"])


def test_pilot_runtime_has_a_default_backstop():
    config = scalems.radical.configuration(BASE)
    assert config.pilot_description()["runtime"] == 30
    assert config.pilot_description()["cores"] >= 1


@pytest.mark.parametrize(
    "option, words",
    [
        ("nosuchkey=1", ["nosuchkey", "unknown"]),
        ("cores=two", ["cores", "integer", "two"]),
        ("cores", ["KEY=VALUE"]),
    ],
)
def test_bad_pilot_options_are_usage_errors(option, words, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse(*BASE, "--pilot-option", option)
    assert exit_info.value.code == 2
    message = capsys.readouterr().err
    for word in words:
        assert word in message
    with pytest.raises(ConfigurationError) as error:
        scalems.radical.configuration([*BASE, "--pilot-option", option])
    for word in words:
        assert word in str(error.value)


def test_reserved_pilot_options_point_to_their_option():
    with pytest.raises(ConfigurationError, match="--resource"):
        parse_pilot_option("resource=local.localhost")
    with pytest.raises(ConfigurationError, match="exit_on_error"):
        parse_pilot_option("exit_on_error=true")
    with pytest.raises(ConfigurationError, match="runtime"):
        RuntimeConfiguration(rp_resource_params={"runtime": 0})
    # Programmatic values may still be text; they are typed the same way.
    assert RuntimeConfiguration(rp_resource_params={"cores": "3"}).rp_resource_params == {"cores": 3}


def test_unknown_resource_says_how_to_list_names(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse("--resource", "local.lcalhost")
    assert exit_info.value.code == 2
    message = capsys.readouterr().err
    assert "radical-pilot-resources" in message and "local.localhost" in message  # the close match
    with pytest.raises(ConfigurationError, match="radical-pilot-resources"):
        RuntimeConfiguration(execution_target="nosuch.machine")
    assert "local.localhost" in known_resources()


def test_access_schema_is_checked():
    assert RuntimeConfiguration(access="local").access == "local"
    with pytest.raises(ConfigurationError, match="ssh"):
        RuntimeConfiguration(access="gsissh")


#: A user resource config as upstream SCALE-MS shipped them, in RP's format before 1.40.
_PRE_140_CONFIG = {
    "localhost": {
        "description": "this machine, written for RADICAL-Pilot < 1.40",
        "schemas": ["local", "ssh"],
        "local": {"job_manager_endpoint": "fork://localhost/", "filesystem_endpoint": "file://localhost/"},
        "ssh": {"job_manager_endpoint": "ssh://localhost/", "filesystem_endpoint": "sftp://localhost/"},
        "resource_manager": "FORK",
        "agent_scheduler": "CONTINUOUS",
        "agent_spawner": "POPEN",
        "launch_methods": {"order": ["FORK"], "FORK": {}},
        "default_remote_workdir": "$HOME",
        "virtenv_mode": "local",
    }
}


@pytest.fixture
def user_resource_dir(tmp_path, monkeypatch):
    """An empty RADICAL user config folder of this test (RP reads $RADICAL_CONFIG_USER_DIR/.radical/...)."""
    from scalems.radical import runtime_configuration

    monkeypatch.setenv("RADICAL_CONFIG_USER_DIR", str(tmp_path / "user"))
    directory = tmp_path / "user" / ".radical" / "pilot" / "configs"
    directory.mkdir(parents=True)
    runtime_configuration._resource_configs.cache_clear()
    yield directory
    runtime_configuration._resource_configs.cache_clear()


def test_resource_config_of_rp_before_1_40_is_a_usage_error_naming_file_and_fix(user_resource_dir, tmp_path):
    import json

    path = user_resource_dir / "resource_oldsite.json"
    path.write_text(json.dumps(_PRE_140_CONFIG, indent=1))
    for access in (None, "ssh"):
        with pytest.raises(ConfigurationError) as error:
            RuntimeConfiguration(execution_target="oldsite.localhost", target_venv=sys.prefix, access=access)
        message = str(error.value)
        assert str(path) in message and "oldsite.localhost" in message and "1.40" in message
        # What to change, in the user's own names: the 1.40 shape.
        assert '"schemas": ["local", "ssh"]' in message
        assert '"default_schema": "local", "schemas": {"local": {...}, "ssh": {...}}' in message
    # On the command line: a usage message (exit status 2), not a traceback.
    script = tmp_path / "script.py"
    script.write_text("print('never runs')\n")
    done = subprocess.run(
        [sys.executable, "-m", "scalems.radical", "--resource", "oldsite.localhost", str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "never runs" not in done.stdout
    assert str(path) in done.stderr and '"default_schema": "local"' in done.stderr


def test_resource_config_in_the_1_40_format_is_accepted(user_resource_dir):
    import json

    host = dict(_PRE_140_CONFIG["localhost"])
    host["default_schema"] = "local"
    host["schemas"] = {name: host.pop(name) for name in ("local", "ssh")}
    (user_resource_dir / "resource_newsite.json").write_text(json.dumps({"localhost": host}))
    config = RuntimeConfiguration(execution_target="newsite.localhost", target_venv=sys.prefix, access="ssh")
    assert config.access == "ssh" and "newsite.localhost" in known_resources()


def test_venv_optional_provisioned_off_localhost_and_defaulted_on_it(tmp_path):
    remote = next(name for name in known_resources() if not name.startswith("local."))
    provisioned = scalems.radical.configuration(["--resource", remote])
    assert provisioned.target_venv is None and provisioned.provisions_task_environment
    with pytest.raises(ConfigurationError, match="not provisioned yet"):
        get_pre_exec(provisioned)
    config = scalems.radical.configuration(["--resource", remote, "--venv", "/remote/venv"])
    assert config.target_venv == "/remote/venv"
    assert config.pilot_description()["nodes"] == 1
    assert scalems.radical.configuration(BASE).target_venv == sys.prefix
    with pytest.raises(ConfigurationError, match="bin/python3"):
        scalems.radical.configuration([*BASE, "--venv", str(tmp_path)])


def test_enable_raptor_without_raptor_client_is_a_configuration_error(monkeypatch):
    from scalems.radical import RadicalBackend

    monkeypatch.setitem(sys.modules, "scalems.radical.raptor", None)
    config = scalems.radical.configuration([*BASE, "--enable-raptor"])
    assert config.enable_raptor
    with pytest.raises(ConfigurationError, match="--enable-raptor"):
        RadicalBackend(configuration=config)


def test_help_and_imports():
    env = dict(os.environ)
    result = subprocess.run(
        [sys.executable, "-m", "scalems.radical", "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    for option in ("--resource", "--venv", "--access", "--pilot-option", "--enable-raptor", "--log-level"):
        assert option in result.stdout
    code = "import sys, scalems; assert 'radical.pilot' not in sys.modules and 'radical' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0
    code = (
        "import sys; sys.modules['radical.pilot'] = None\n"
        "import scalems.radical\n"
        "try:\n    scalems.radical.executor_factory\n"
        "except ImportError as e:\n    print(type(e).__name__, e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    assert out.startswith(MissingDependencyError.__name__) and "scalems[radical]" in out


def _job(tmp_path, argv, **fields):
    return executable_job(tmp_path, argv, **{"uid": "u", "label": "job", **fields})


def test_command_line_reaches_the_program_literally(tmp_path):
    """RP leaves $ and backticks in arguments to its shell; scalems hands it a fully quoted command."""
    config = RuntimeConfiguration()
    argv = ["printf", "%s\n", "$HOME", "`id`", "a b", "'q'", '"d"']
    description = describe_executable(_job(tmp_path, argv, env={"V": "$x 'y'"}), "t1", config, PathAliases())
    assert description.arguments == []
    words = shlex.split(description.executable)
    assert words[:2] == ["/bin/sh", "-c"] and words[3:] == argv
    assert "export V=" in description.pre_exec[-1] and shlex.split(description.pre_exec[-1])[1] == "V=$x 'y'"
    assert description.stage_on_error and description.stdout == str(tmp_path / "stdout")


def test_staging_of_inputs_stdin_outputs_and_awkward_paths(tmp_path):
    awkward = tmp_path / "with space"
    awkward.mkdir()
    source = awkward / "in.txt"
    source.write_text("x")
    stdin = awkward / ".scalems-stdin"
    stdin.write_text("y")
    aliases = PathAliases()
    try:
        job = _job(
            awkward,
            [InputFile(source=source, name="prog.sh"), InputFile(source=source, name="in.txt")],
            stdin=stdin,
            outputs=["out/result.dat"],
            resources=Resources(ranks=2, cores_per_rank=2, threading_type="openmp"),
        )
        description = describe_executable(job, "t2", RuntimeConfiguration(), aliases)
        words = shlex.split(description.executable)
        assert words[3:] == ["./prog.sh", "in.txt"]  # a staged program runs from the sandbox
        assert "< .scalems-stdin" in words[2]
        targets = sorted(sd["target"] for sd in description.input_staging)
        assert targets == ["task:///.scalems-stdin", "task:///in.txt", "task:///prog.sh"]
        for sd in description.input_staging + description.output_staging:
            url = sd["source"] if sd["source"].startswith("file:") else sd["target"]
            assert " " not in url
            assert os.path.realpath(url[len("file://localhost") :]).startswith(str(awkward))
        assert [sd["source"] for sd in description.output_staging] == ["task:///out/result.dat"]
        # Locally, the streams go straight to the task directory (through a plain-named link).
        for stream, name in ((description.stdout, "stdout"), (description.stderr, "stderr")):
            assert " " not in stream and os.path.realpath(stream) == str(awkward / name)
        assert (description.ranks, description.cores_per_rank, description.threading_type) == (
            2,
            2,
            rp.OpenMP,
        )
    finally:
        aliases.close()
    with pytest.raises(ValueError, match="plain file name"):
        describe_executable(
            _job(tmp_path, ["true"], outputs=["a b"]), "t3", RuntimeConfiguration(), PathAliases()
        )


def test_placed_inputs_are_staged_under_their_names_and_not_on_the_command_line(tmp_path):
    """inputs=[file, (name, file)]: a program that reads files by fixed names (lmp -in in.lj) finds them."""
    deck = tmp_path / "in.lj"
    deck.write_text("deck")
    restart = tmp_path / "final.data"
    restart.write_text("atoms")
    job = _job(
        tmp_path,
        ["lmp", "-in", "in.lj"],
        inputs=(InputFile(source=deck, name="in.lj"), InputFile(source=restart, name="start.data")),
    )
    description = describe_executable(job, "t6", RuntimeConfiguration(), PathAliases())
    assert shlex.split(description.executable)[3:] == ["lmp", "-in", "in.lj"]
    staged = {sd["target"]: sd["source"] for sd in description.input_staging}
    assert staged == {
        "task:///in.lj": f"file://localhost{deck}",
        "task:///start.data": f"file://localhost{restart}",
    }


def test_remote_resources_transfer_files(tmp_path):
    remote = next(name for name in known_resources() if not name.startswith("local."))
    config = RuntimeConfiguration(execution_target=remote, target_venv="/remote/venv")
    description = describe_executable(
        _job(tmp_path, ["true"], outputs=["o/x"], stdout="logs/out"), "t4", config, PathAliases()
    )
    assert sorted(sd["source"] for sd in description.output_staging) == [
        "task:///logs/out",
        "task:///o/x",
        "task:///stderr",
    ]
    assert all(sd["action"] == rp.TRANSFER for sd in description.output_staging)
    assert description.stdout == "logs/out" and description.pre_launch == ["mkdir -p logs"]
    assert ". /remote/venv/bin/activate" in description.pre_exec[0]
    job = FunctionJob(uid="f", label="f", call="{}", directory=tmp_path, resources=Resources(ranks=2))
    description = describe_function(job, "t5", config, PathAliases())
    words = shlex.split(description.executable)
    assert words[3:] == ["/remote/venv/bin/python3", "scalems-call.json", "scalems-result.json"]
    assert description.ranks == 2
    assert [sd["target"] for sd in description.input_staging] == ["task:///scalems-call.json"]


def test_original_scalems_names_still_work():
    from scalems.radical.backend import RadicalBackend

    assert scalems.radical.RPDispatchingExecutor is RadicalBackend is scalems.radical.RadicalBackend
    assert scalems.radical.executor_factory is scalems.radical.backend.executor_factory
    assert scalems.radical.RuntimeSession is scalems.radical.session.RuntimeSession


def test_session_folder_defaults_to_the_work_directory(tmp_path):
    from scalems.radical import RadicalBackend

    executor = RadicalBackend(configuration=RuntimeConfiguration(), work_dir=tmp_path)
    assert executor.session_dir == pathlib.Path(tmp_path, "scalems_radical")


def test_configuration_scope_and_factory(tmp_path):
    from types import SimpleNamespace

    from scalems.exceptions import APIError
    from scalems.radical import RadicalBackend, current_configuration, executor_factory

    first = RadicalBackend(configuration=RuntimeConfiguration(), work_dir=tmp_path)
    second = RadicalBackend(configuration=RuntimeConfiguration(), work_dir=tmp_path)
    assert current_configuration() is None
    with first.runtime_configuration() as config:
        assert current_configuration() is config
        with pytest.raises(APIError, match="already active"):
            with second.runtime_configuration():
                pass
        made = executor_factory(SimpleNamespace(directory=tmp_path / "work"))
        assert made.configuration() is config and made.session_dir == tmp_path / "work" / "scalems_radical"
    assert current_configuration() is None
    with pytest.raises(ConfigurationError, match="configuration"):
        executor_factory(SimpleNamespace(directory=tmp_path))
    with pytest.raises(TypeError, match="RuntimeConfiguration"):
        executor_factory(SimpleNamespace(directory=tmp_path), {"resource": "local.localhost"})


def test_the_backend_never_sees_the_store():
    """Nothing under scalems.radical imports scalems.store, nor does importing any of it load the store."""
    import ast

    root = pathlib.Path(scalems.radical.__file__).parent
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = "." * node.level + (node.module or "")
                names = [base] + [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            for name in names:
                assert not name.startswith(("scalems.store", "..store", "...store")), (
                    f"{path.relative_to(root)} imports {name}"
                )
    modules = [
        "scalems." + ".".join(path.relative_to(root.parent).with_suffix("").parts)
        for path in sorted(root.rglob("*.py"))
        if path.name != "__main__.py"
    ]
    code = (
        "import importlib, sys\n"
        f"for name in {[m.replace('.__init__', '') for m in modules]!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m.startswith('scalems.store')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_threads_and_gpus_map_to_rp_fields(tmp_path):
    """cores_per_rank > 1 means OpenMP threads unless the task says otherwise (RP then sets
    OMP_NUM_THREADS, as the local backend does); GPUs are CUDA devices RP assigns."""
    from scalems.radical.task import PathAliases, describe_executable

    aliases = PathAliases()
    try:
        threaded = describe_executable(
            _job(tmp_path, ["lmp"], resources=Resources(ranks=2, cores_per_rank=4)), "a", RuntimeConfiguration(), aliases
        )
        gpu = describe_executable(
            _job(tmp_path, ["gmx"], resources=Resources(gpus_per_rank=1)), "b", RuntimeConfiguration(), aliases
        )
        posix = describe_executable(
            _job(tmp_path, ["x"], resources=Resources(cores_per_rank=2, threading_type="posix")),
            "c",
            RuntimeConfiguration(),
            aliases,
        )
    finally:
        aliases.close()
    assert (threaded.ranks, threaded.cores_per_rank, threaded.threading_type) == (2, 4, rp.OpenMP)
    assert (gpu.gpus_per_rank, gpu.gpu_type) == (1, rp.CUDA)
    assert posix.threading_type == rp.POSIX
