"""Bounded waits (scalems.execution.waiting) keep Ctrl-C working."""

from __future__ import annotations

import asyncio

import pytest

from scalems.execution.waiting import await_bounded, in_thread, wait_within


async def _cancel_as_it_completes(**options):
    """Cancel the waiting task in the same loop turn in which its future gets its result."""
    future = asyncio.get_running_loop().create_future()
    task = asyncio.ensure_future(wait_within(future, 10, **options))
    await asyncio.sleep(0)
    future.set_result("done")
    task.cancel()
    try:
        return await task
    except asyncio.CancelledError:
        return "cancelled"


def test_cancellation_arriving_as_the_future_completes_is_not_lost():
    # asyncio.wait_for on Python 3.11 returns "done" here and the Ctrl-C is gone.
    assert asyncio.run(_cancel_as_it_completes()) == "cancelled"
    assert asyncio.run(_cancel_as_it_completes(cancel=False)) == "cancelled"


def test_timeout_raises_and_cancels_the_future_unless_told_not_to():
    async def wait(cancel):
        future = asyncio.get_running_loop().create_future()
        with pytest.raises(asyncio.TimeoutError):
            await wait_within(future, 0.01, cancel=cancel)
        return future.cancelled()

    assert asyncio.run(wait(True)) is True
    assert asyncio.run(wait(False)) is False


def test_result_and_exception_pass_through():
    async def settle(value=None, error=None):
        future = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(0.01, future.set_exception if error else future.set_result, error or value)
        return await wait_within(future, None)

    assert asyncio.run(settle(value=42)) == 42
    with pytest.raises(KeyError):
        asyncio.run(settle(error=KeyError("x")))


def test_in_thread_runs_off_the_loop_thread_and_hands_back_result_or_error():
    import threading

    async def run(func):
        return await in_thread(func, name="scalems-test")

    assert asyncio.run(run(lambda: threading.current_thread().name)) == "scalems-test"
    assert asyncio.run(run(lambda: threading.current_thread().daemon)) is True
    with pytest.raises(ZeroDivisionError):
        asyncio.run(run(lambda: 1 / 0))


def test_bounded_clean_up_finishes_before_a_cancellation_propagates():
    import threading

    release = threading.Event()

    async def scenario():
        clean_up = in_thread(release.wait, 10)
        waiter = asyncio.ensure_future(await_bounded(clean_up, 10, "the clean-up"))
        await asyncio.sleep(0.05)
        waiter.cancel()  # Ctrl-C while cleaning up
        await asyncio.sleep(0.05)
        assert not waiter.done(), "the cancellation must wait for the clean-up"
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        return clean_up.done()

    assert asyncio.run(scenario()) is True


def test_bounded_wait_gives_up_after_its_bound(caplog):
    async def scenario():
        never = asyncio.get_running_loop().create_future()
        return await await_bounded(never, 0.05, "the clean-up")

    assert asyncio.run(scenario()) is None
    assert any("the clean-up" in record.getMessage() for record in caplog.records)
