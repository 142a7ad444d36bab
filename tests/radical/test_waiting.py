"""Bounded waits of the RADICAL backend keep Ctrl-C working (no RP session needed)."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("radical.pilot")

from scalems.radical.session import wait_within  # noqa: E402


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
