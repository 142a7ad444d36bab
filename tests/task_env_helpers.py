"""Helpers for task environment tests: throwaway venvs and a stand-in ``scalems`` distribution.

Everything is offline: venvs get pip from ``ensurepip``; the stand-in is a wheel written here.
"""

from __future__ import annotations

import base64
import hashlib
import pathlib
import subprocess
import sys
import zipfile


def make_venv(path: pathlib.Path) -> pathlib.Path:
    """A fresh venv at *path* (pip included, nothing else); returns its python."""
    base = getattr(sys, "_base_executable", None) or sys.executable
    subprocess.run([base, "-m", "venv", str(path)], check=True, capture_output=True, timeout=300)
    return path / "bin" / "python"


def pip_install_offline(python: pathlib.Path, *requirements) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(python), "-m", "pip", "install", "--no-index", "--no-deps", "--disable-pip-version-check", *map(str, requirements)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def standin_wheel(directory: pathlib.Path, version: str = "0.0.1") -> pathlib.Path:
    """A wheel of a tiny distribution named ``scalems`` (an ``__init__`` saying its version, no RP)."""
    info = f"scalems-{version}.dist-info"
    members = {
        "scalems/__init__.py": f'__version__ = "{version}"\n',
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: scalems\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for name, text in members.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(text.encode())}")
    members[f"{info}/RECORD"] = "\n".join(record + [f"{info}/RECORD,,"]) + "\n"
    path = directory / f"scalems-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in members.items():
            archive.writestr(name, text)
    return path


def mismatched_venv(root: pathlib.Path) -> pathlib.Path:
    """A venv whose scalems is the stand-in 0.0.1 and that has no radical.pilot."""
    root.mkdir(parents=True, exist_ok=True)
    venv = root / "old-venv"
    python = make_venv(venv)
    done = pip_install_offline(python, standin_wheel(root))
    assert done.returncode == 0, done.stdout + done.stderr
    return venv


def touching_workflow(work: pathlib.Path, ran: pathlib.Path) -> pathlib.Path:
    """A workflow script in *work* whose one task creates *ran*: if *ran* exists, a task ran."""
    from cli import write_script

    return write_script(
        work,
        "flow.py",
        f"""
        import scalems
        @scalems.app
        def main():
            scalems.executable(["touch", "{ran}"], label="touch")
        """,
    )
