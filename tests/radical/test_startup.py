"""Start-up failures of the RADICAL-Pilot backend end quickly, clearly, and without leftovers.

Each test starts its own RP session, so they are marked slow.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest

rp = pytest.importorskip("radical.pilot")

from scalems.exceptions import DispatchError  # noqa: E402
from scalems.radical import RadicalBackend, RuntimeConfiguration  # noqa: E402
from scalems.execution.processes import processes_marked  # noqa: E402

pytestmark = [pytest.mark.radical, pytest.mark.slow]


def _executor(base, settings=None, **pilot_options) -> RadicalBackend:
    options = {"cores": 1, "runtime": 5, "sandbox": str(base / "sandbox"), **pilot_options}
    config = RuntimeConfiguration(rp_resource_params=options, session_dir=str(base / "session"), **(settings or {}))
    return RadicalBackend(configuration=config, work_dir=base)


def _session_ids(base) -> list:
    return [path.name for path in (base / "session").glob("rp.session.*")]


def _assert_nothing_left(base):
    # Usually one session; two if RP hung while setting up the first and it was replaced.
    sids = _session_ids(base)
    assert 1 <= len(sids) <= 2, sids
    left = processes_marked([sid.encode() for sid in sids])
    assert not left, f"processes of {sids} left behind: {left}"


def test_pilot_that_cannot_start_is_a_dispatch_error(tmp_path):
    executor = _executor(tmp_path, {"session_startup_timeout": 60}, sandbox="/proc/scalems-cannot-create-this")
    started = time.monotonic()
    with pytest.raises(DispatchError) as error:
        asyncio.run(asyncio.wait_for(executor.__aenter__(), 300))
    assert time.monotonic() - started < 200
    message = str(error.value)
    assert "FAILED" in message and "pilot.0000" in message and "scalems-cannot-create-this" in message
    _assert_nothing_left(tmp_path)


def test_pilot_already_failed_when_waited_for_is_reported_at_once(tmp_path):
    """RP's Pilot.wait() returns None for a pilot that is already final: the wait must still see
    the failure (this race once cost a CI run its 300 s timeout)."""
    from scalems.radical.session import RuntimeSession

    options = {"cores": 1, "runtime": 5, "sandbox": "/proc/scalems-cannot-create-this"}
    config = RuntimeConfiguration(rp_resource_params=options, session_dir=str(tmp_path / "session"))
    runtime = RuntimeSession(config, tmp_path / "session")
    try:
        runtime.open()
        runtime.pilot().wait(state=list(rp.FINAL), timeout=120)
        assert runtime.pilot().state == rp.FAILED
        started = time.monotonic()
        with pytest.raises(DispatchError, match="ended in state FAILED"):
            runtime.wait_for_pilot(timeout=60)
        assert time.monotonic() - started < 10
    finally:
        runtime.close()
    _assert_nothing_left(tmp_path)


class _Submitted(logging.Handler):
    """Fires when the backend logs that the pilot was submitted."""

    def __init__(self, loop: asyncio.AbstractEventLoop, event: asyncio.Event):
        super().__init__()
        self._loop, self._event = loop, event

    def emit(self, record):
        if record.getMessage().startswith("Pilot ") and "submitted" in record.getMessage():
            self._loop.call_soon_threadsafe(self._event.set)


def test_cancelled_startup_closes_the_session(tmp_path):
    """Ctrl-C while the pilot starts: the cancellation propagates after RP is shut down."""
    executor = _executor(tmp_path)
    logger = logging.getLogger("scalems.radical.session")

    async def cancel_once_submitted():
        event = asyncio.Event()
        handler = _Submitted(asyncio.get_running_loop(), event)
        logger.addHandler(handler)
        previous = logger.level
        logger.setLevel(logging.INFO)
        try:
            entering = asyncio.ensure_future(executor.__aenter__())
            waiter = asyncio.ensure_future(event.wait())
            await asyncio.wait({entering, waiter}, timeout=200, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            assert not entering.done(), "the pilot became active before the test could cancel start-up"
            entering.cancel()
            with pytest.raises(asyncio.CancelledError):
                await entering
        finally:
            logger.removeHandler(handler)
            logger.setLevel(previous)

    asyncio.run(asyncio.wait_for(cancel_once_submitted(), 300))
    assert executor.runtime is None
    _assert_nothing_left(tmp_path)


class _TaskManagerThatHangs:
    """Stands in for ``rp.TaskManager`` the way RP 1.103 sometimes behaves: its constructor
    never returns (a registry request nobody answers). The first *hangs* calls hang until
    the test releases them; later calls build the real TaskManager."""

    def __init__(self, hangs: int):
        self.real = rp.TaskManager
        self.hangs = hangs
        self.calls = 0
        self.release = threading.Event()

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls <= self.hangs:
            self.release.wait(300)
            raise RuntimeError("released by the test")
        return self.real(*args, **kwargs)


# The bounds below leave RP time to create the session and PilotManager on a loaded 2-core
# machine (4-15 s seen), so that it is the injected TaskManager hang that runs into them.


def _assert_sessions_ended(base, count):
    sids = _session_ids(base)
    assert len(sids) == count
    left = processes_marked([sid.encode() for sid in sids])
    assert not left, f"processes of {sids} left behind: {left}"


def test_session_that_hangs_while_starting_is_replaced_by_a_new_one(tmp_path, monkeypatch, caplog):
    hanging = _TaskManagerThatHangs(hangs=1)
    monkeypatch.setattr(rp, "TaskManager", hanging)
    executor = _executor(tmp_path, settings={"session_startup_timeout": 40})
    caplog.set_level(logging.WARNING, logger="scalems.radical")
    try:

        async def start_and_stop():
            await executor.__aenter__()
            assert executor.runtime.pilot().state == rp.PMGR_ACTIVE
            await executor.__aexit__(None, None, None)

        asyncio.run(asyncio.wait_for(start_and_stop(), 240))
    finally:
        hanging.release.set()
    assert hanging.calls == 2
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        "hung while creating the TaskManager" in text and "starting a new one" in text for text in warnings
    ), warnings
    _assert_sessions_ended(tmp_path, 2)


def test_session_that_keeps_hanging_is_a_dispatch_error_naming_the_stage(tmp_path, monkeypatch):
    hanging = _TaskManagerThatHangs(hangs=2)
    monkeypatch.setattr(rp, "TaskManager", hanging)
    executor = _executor(tmp_path, settings={"session_startup_timeout": 30})
    try:
        with pytest.raises(DispatchError) as error:
            asyncio.run(asyncio.wait_for(executor.__aenter__(), 240))
    finally:
        hanging.release.set()
    message = str(error.value)
    assert "hung while creating the TaskManager" in message and "Gave up after 2 sessions" in message
    assert str(tmp_path / "session") in message, "the message should say where RP's logs are"
    assert executor.runtime is None
    _assert_sessions_ended(tmp_path, 2)
