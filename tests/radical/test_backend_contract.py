"""The backend-independent contract suite (tests/test_workflow.py), run on RADICAL-Pilot.

Every test of ``test_workflow`` that takes the ``make_workflow`` fixture runs here
again, with workflows whose backend forwards jobs to the one shared
``local.localhost`` pilot of this test run.
"""

from __future__ import annotations

import inspect

import pytest

pytest.importorskip("radical.pilot")

import test_workflow  # noqa: E402  (tests/ is on sys.path: it holds the top-level conftest.py)
from test_backend_workflow import Forwarding  # noqa: E402

pytestmark = pytest.mark.radical

for _name, _test in vars(test_workflow).items():
    if _name.startswith("test_") and "make_workflow" in inspect.signature(_test).parameters:
        globals()[_name] = _test


@pytest.fixture
def make_workflow(rp_backend):
    from scalems.workflow.manager import WorkflowManager

    def factory(directory, use_cache=True):
        return WorkflowManager(
            lambda manager, params: Forwarding(rp_backend),
            None,
            directory=directory,
            use_cache=use_cache,
            progress=False,
        )

    return factory
