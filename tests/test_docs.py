"""The API reference covers the public names; the documentation build itself is tools/docs.sh (in tools/test.sh)."""

from __future__ import annotations

import pathlib
import re

import scalems

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs"
_DIRECTIVE = re.compile(r"^\.\. (?:auto(?:function|class|data|exception)|py:\w+)::\s+(.*)$")


def documented_names(rst: str) -> set:
    """Object names given to documenting directives, including continuation lines of ``py:data``."""
    names = set()
    lines = rst.splitlines()
    for i, line in enumerate(lines):
        match = _DIRECTIVE.match(line)
        if not match:
            continue
        names.add(match.group(1).strip())
        for following in lines[i + 1 :]:
            text = following.strip()
            if not text or text.startswith(":") or not following.startswith(" "):
                break
            names.add(text)
    return names


def test_api_reference_documents_every_public_name():
    names = documented_names((DOCS / "api.rst").read_text())
    missing = [name for name in scalems.__all__ if name not in names and f"scalems.{name}" not in names]
    assert not missing, f"docs/api.rst does not document scalems.{', scalems.'.join(missing)}"


def test_documented_names_exist():
    """A name documented on the API page that is not public is a leftover of a rename."""
    text = (DOCS / "api.rst").read_text()
    module = "scalems"
    for line in text.splitlines():
        current = re.match(r"^\.\. currentmodule:: (\S+)", line)
        if current:
            module = current.group(1)
        match = _DIRECTIVE.match(line)
        if not match or line.startswith(".. py:"):
            continue
        name = match.group(1).strip()
        if not name.startswith("scalems."):
            name = f"{module}.{name}"
        owner, _, attribute = name.rpartition(".")
        imported = __import__(owner, fromlist=[attribute])
        assert hasattr(imported, attribute), name
        public = getattr(imported, "__all__", None)
        assert public is None or attribute in public, f"{name} is documented but not in {owner}.__all__"
