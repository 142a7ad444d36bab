"""scalems.radical's parser without RADICAL-Pilot: the documentation build and --help need it.

Runs in a subprocess in which every ``radical`` module is unimportable (a meta-path
blocker), whether or not radical.pilot is installed in this environment.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

BLOCK_RADICAL = textwrap.dedent(
    """
    import sys

    class _NoRadical:
        def find_spec(self, name, path=None, target=None):
            if name == "radical" or name.startswith("radical."):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
            return None

    sys.meta_path.insert(0, _NoRadical())
    for _name in [n for n in sys.modules if n == "radical" or n.startswith("radical.")]:
        del sys.modules[_name]
    """
)


def _run_without_radical(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", BLOCK_RADICAL + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_parser_without_radical_pilot():
    result = _run_without_radical(
        """
        import scalems.radical
        for action in scalems.radical.parser._actions:
            print(" ".join(action.option_strings))
        print("HELP", scalems.radical.parser.format_help())
        print("LOADED", sorted(n for n in sys.modules if n.startswith("radical")))
        """
    )
    assert result.returncode == 0, result.stderr
    options = set(result.stdout.split())
    for option in ("--resource", "--access", "--venv", "--pilot-option", "--enable-raptor", "--work-dir"):
        assert option in options
    assert "python -m scalems.radical" in result.stdout
    assert "LOADED []" in result.stdout


def test_using_the_backend_without_radical_pilot_names_the_extra():
    result = _run_without_radical(
        """
        import scalems.radical
        from scalems.exceptions import MissingDependencyError
        for use in (
            lambda: scalems.radical.executor_factory,
            lambda: scalems.radical.RuntimeSession,
            lambda: scalems.radical.configuration(["--resource", "local.localhost"]),
            lambda: scalems.radical.workflow_manager(directory="."),
        ):
            try:
                use()
            except MissingDependencyError as error:
                print("MISSING", error.package, error.extra)
            else:
                print("NO ERROR")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:4] == ["MISSING radical.pilot radical"] * 4
