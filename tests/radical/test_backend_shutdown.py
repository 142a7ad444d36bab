"""Ending a RADICAL backend: a pilot that ends fails the jobs waiting on it, and closing leaves nothing.

The test starts a backend of its own (rp_shared.private_backend): it ends the
pilot, which no test may do to a shared one.
"""

from __future__ import annotations

import asyncio
import logging
import pathlib
import time

import pytest
from rp_jobs import executable_job
from rp_shared import private_backend

rp = pytest.importorskip("radical.pilot")

from scalems.exceptions import DispatchError  # noqa: E402
from scalems.execution import ExecutableJob  # noqa: E402
from scalems.execution.processes import processes_marked  # noqa: E402

pytestmark = pytest.mark.radical


def job(tmp_path: pathlib.Path, argv) -> ExecutableJob:
    directory = tmp_path / argv[0]
    directory.mkdir()
    return executable_job(directory, argv)


def test_pilot_that_ends_fails_waiting_jobs_and_close_leaves_nothing(tmp_path, caplog):
    backend = private_backend(tmp_path / "rp")
    try:
        pilot_that_ends_fails_waiting_jobs(backend, tmp_path)
        close_leaves_no_processes_and_nothing_outside(backend, caplog)
    finally:
        backend.close()


def pilot_that_ends_fails_waiting_jobs(rp_backend, tmp_path):
    sleeper = job(tmp_path, ["sleep", "300"])
    pilot_manager = rp_backend.executor.runtime.pilot_manager()

    async def end_pilot_while_waiting():
        task = asyncio.ensure_future(rp_backend.executor.run(sleeper))
        await asyncio.to_thread(pilot_manager.cancel_pilots)
        try:
            return await asyncio.wait_for(task, 120)
        except DispatchError as error:
            return error

    error = rp_backend.call(end_pilot_while_waiting(), timeout=150)
    assert isinstance(error, DispatchError) and "pilot.0000" in str(error) and "ended" in str(error), error
    with pytest.raises(DispatchError, match="pilot"):
        rp_backend.run(job(tmp_path, ["true"]))


def close_leaves_no_processes_and_nothing_outside(rp_backend, caplog):
    sid = rp_backend.sid
    caplog.set_level(logging.INFO, logger="scalems")
    root_handlers = list(logging.getLogger().handlers)
    assert sid and sid in str(rp_backend.executor.runtime.session.path)
    assert processes_marked([sid.encode()]), (
        "the scan must see the running session, or it proves nothing"
    )
    started = time.monotonic()
    rp_backend.close()
    closing_time = time.monotonic() - started
    left = processes_marked([sid.encode()])
    assert not left, f"RP processes of {sid} left behind: {left}"
    assert closing_time < 120
    # RP closes the handlers of the root logger with its own; the backend puts them back.
    assert all(handler in logging.getLogger().handlers for handler in root_handlers)
    assert "closed in" in caplog.text
    after = rp_backend.snapshot_outside()
    assert after["home"] == rp_backend.before["home"]
    # Other runs may come and go in the current directory; this one must not have added a session folder.
    assert not (after["cwd"] - rp_backend.before["cwd"]), after["cwd"] - rp_backend.before["cwd"]
    # RP's client files went where they were told.
    assert list((rp_backend.base / "session").glob("rp.session.*"))
    assert not list(pathlib.Path.cwd().glob(f"{sid}*"))
