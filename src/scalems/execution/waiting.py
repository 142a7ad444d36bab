"""Waiting on blocking calls from asyncio, bounded, without losing a cancellation.

Backends call libraries that block (RADICAL-Pilot calls block for seconds, and
some can block forever). These helpers keep such calls off the event loop
thread and bound every wait, while a cancellation of the waiting task (Ctrl-C
under :func:`asyncio.run`) always reaches the caller.

``asyncio.wait_for`` is not used here, nor should it be for these waits: on
Python < 3.12 it swallows a cancellation that arrives in the loop turn in
which the awaited future completes (it returns the result instead), and a
Ctrl-C is lost. :func:`wait_within` is its replacement.

* :func:`in_thread` — run a blocking call in a new daemon thread; an asyncio
  future for its result.
* :func:`wait_within` — await a future at most *timeout* seconds.
* :func:`await_bounded` — wait for clean-up to finish (bounded), even while
  being cancelled; re-raise the cancellation afterwards.
"""

from __future__ import annotations

__all__ = ("in_thread", "wait_within", "await_bounded")

import asyncio
import logging
import threading
import time
import typing

logger = logging.getLogger(__name__)

_T = typing.TypeVar("_T")


def in_thread(func: typing.Callable[..., _T], *args, name: str = "scalems-blocking") -> "asyncio.Future[_T]":
    """Run blocking *func* in a new daemon thread; return an asyncio future for its result.

    Call from the event loop thread. A daemon thread, not the loop's default
    executor: a stuck call must not keep the interpreter from exiting (executor
    threads are joined at exit). Cancelling the awaiting coroutine leaves the
    future running, so that the caller can still wait for it and clean up what
    it produced.
    """
    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def settle(ok: bool, value):
        if not future.done():
            (future.set_result if ok else future.set_exception)(value)

    def target():
        try:
            outcome = (True, func(*args))
        except BaseException as error:  # noqa: BLE001 - handed over to the event loop
            outcome = (False, error)
        try:
            loop.call_soon_threadsafe(settle, *outcome)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass

    threading.Thread(target=target, name=name, daemon=True).start()
    return future


async def wait_within(future: "asyncio.Future[_T]", timeout: typing.Optional[float], *, cancel: bool = True) -> _T:
    """Await *future* at most *timeout* seconds (None: no limit); raise :class:`asyncio.TimeoutError` after.

    Like ``asyncio.wait_for``, except that a cancellation of the caller arriving just as
    *future* completes is not swallowed (it is, on Python < 3.12). With *cancel* (the
    default), *future* is cancelled when the wait times out or the caller is cancelled.
    """
    try:
        await asyncio.wait({future}, timeout=timeout)
    except asyncio.CancelledError:
        if cancel:
            future.cancel()
        raise
    if not future.done():
        if cancel:
            future.cancel()
        raise asyncio.TimeoutError()
    return future.result()


async def await_bounded(
    future: "asyncio.Future[_T]", timeout: typing.Optional[float], what: str
) -> typing.Optional[_T]:
    """Wait for *future* at most *timeout* seconds, even if this coroutine is cancelled meanwhile.

    Clean-up must finish even on Ctrl-C, or processes stay behind. A
    cancellation received while waiting is re-raised afterwards. Returns None
    (and logs an error naming *what*) on timeout; exceptions of *future* propagate.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    cancelled = False
    while not future.done():
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            logger.error("Did not finish %s within %g s; giving up waiting.", what, timeout)
            break
        try:
            await asyncio.wait({future}, timeout=remaining)
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError()
    if future.done():
        return future.result()
    return None
