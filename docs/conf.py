"""Sphinx configuration of the scalems documentation. Build it with ``bash tools/docs.sh``."""

from __future__ import annotations

import importlib
import pathlib
import sys

DOCS = pathlib.Path(__file__).resolve().parent
ROOT = DOCS.parent
# Document this source tree even if another scalems is installed; _ext holds the notebook directive.
sys.path[:0] = [str(ROOT / "src"), str(DOCS / "_ext")]

import argparse  # noqa: E402

import scalems  # noqa: E402
import sphinxcontrib.autoprogram  # noqa: E402

# sphinxcontrib-autoprogram (0.1.9) lists a positional argument even when its help is
# argparse.SUPPRESS, as for the script's pass-through arguments; leave such arguments out.
_scan_options = sphinxcontrib.autoprogram.scan_options


def _shown_options(actions):
    return _scan_options([action for action in actions if action.help is not argparse.SUPPRESS])


sphinxcontrib.autoprogram.scan_options = _shown_options

project = "scalems"
author = "the scalems developers"
copyright = "the scalems developers"
release = scalems.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",  # the docstrings use Google style (Args:, Returns:, Raises:)
    "sphinx.ext.viewcode",
    "sphinxcontrib.autoprogram",
    "scalems_notebook",
]

exclude_patterns = ["_build"]
templates_path: list = []
html_theme = "alabaster"
html_static_path: list = []
html_theme_options = {
    "description": "one workflow script, laptop to HPC",
    "fixed_sidebar": True,
    "page_width": "1160px",
    "sidebar_width": "230px",
}
html_sidebars = {"**": ["about.html", "navigation.html", "searchbox.html"]}

# Signatures without annotations: the docstrings say what each argument may be, in words.
autodoc_typehints = "none"
autodoc_member_order = "bysource"
napoleon_google_docstring = True
napoleon_numpy_docstring = False

# Every reference must resolve (-n, with -W in tools/docs.sh), but only for scalems's own names:
# references to Python's standard library, RADICAL-Pilot, mpi4py and dill cannot be checked,
# because the build runs offline (no intersphinx inventories), so they are not checked at all.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(?!scalems\b).*"),
]


def _public_name(app, env, node, contnode):
    """Resolve ``scalems.workflow.Task`` (how some docstrings say it) to the documented ``scalems.Task``.

    Only where the two names are the same object, so a wrong name still fails the build.
    """
    if node.get("refdomain") != "py":
        return None
    module, _, name = node.get("reftarget", "").rpartition(".")
    if not module.startswith("scalems.") or name not in scalems.__all__:
        return None
    try:
        same = getattr(importlib.import_module(module), name) is getattr(scalems, name)
    except (ImportError, AttributeError):
        return None
    if not same:
        return None
    python = env.get_domain("py")
    return python.resolve_xref(env, node["refdoc"], app.builder, node["reftype"], f"scalems.{name}", node, contnode)


def setup(app):
    app.connect("missing-reference", _public_name)
