"""One RADICAL-Pilot backend for the whole test run.

Starting a session and a local pilot takes 20-30 s and closing one 5-15 s, so
the RP tests share one :class:`RadicalBackend` on ``local.localhost``
(2 cores, 15 minutes run time as a backstop, sandbox and session folder under
the confined test directories). It runs on its own event loop in a background
thread, the way the workflow layer runs it.
"""

from __future__ import annotations

import typing

import pytest
from rp_jobs import Backend, snapshot_outside


@pytest.fixture(scope="session")
def rp_backend(tmp_path_factory) -> typing.Iterator[Backend]:
    """The shared RP backend (started on first use, closed at the end or by the clean-up test)."""
    pytest.importorskip("radical.pilot")
    from scalems.radical import RadicalBackend, RuntimeConfiguration

    base = tmp_path_factory.mktemp("rp-backend")
    before = snapshot_outside()
    configuration = RuntimeConfiguration(
        execution_target="local.localhost",
        rp_resource_params={"cores": 2, "runtime": 15, "sandbox": str(base / "sandbox")},
        session_dir=str(base / "session"),
    )
    backend = Backend(RadicalBackend(configuration=configuration, work_dir=base), base, before)
    try:
        backend.start()
        yield backend
    finally:
        backend.close()
