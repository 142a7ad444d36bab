"""The local backend's warm worker pool: batching, adaptive queueing, and worker loss."""

import asyncio
import os
import time

import pytest

import scalems.call
from scalems.local.worker_pool import QUEUE_DEPTH, QUEUE_DEPTH_SHORT, WorkerDied, WorkerPool


def identity(value):
    return value


def nap(seconds):
    time.sleep(seconds)
    return seconds


def die_after(seconds):
    time.sleep(seconds)
    os._exit(3)


def encode(func, *args) -> str:
    return scalems.call.serialize_call(func, args=args)


def value_of(reply: str):
    result = scalems.call.deserialize_result(reply)
    assert result.exception is None, result.traceback
    return result.return_value


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 120))


def test_queue_depth_follows_call_duration(no_leaked_processes):
    async def main():
        pool = WorkerPool(2)
        try:
            assert pool.queue_depth == QUEUE_DEPTH  # nothing known yet: queue little
            replies = await asyncio.gather(*(pool.run(encode(identity, i)) for i in range(400)))
            assert [value_of(r) for r in replies] == list(range(400))
            short = pool.queue_depth
            await asyncio.gather(*(pool.run(encode(nap, 0.2)) for _ in range(4)))
            return short, pool.queue_depth
        finally:
            await pool.close()

    short, after_long = run(main())
    assert (short, after_long) == (QUEUE_DEPTH_SHORT, QUEUE_DEPTH)


def test_large_call_to_busy_worker_does_not_block_the_loop(no_leaked_processes):
    """A record bigger than the pipe buffer is written as the worker reads it, never blocking the loop."""
    payload = "x" * (4 << 20)

    async def main():
        pool = WorkerPool(1)
        ticks = []

        async def ticker():
            while True:
                ticks.append(time.monotonic())
                await asyncio.sleep(0.01)

        beat = asyncio.create_task(ticker())
        try:
            busy = asyncio.create_task(pool.run(encode(nap, 0.5)))
            await asyncio.sleep(0.05)
            big = await pool.run(encode(identity, payload))
            await busy
        finally:
            beat.cancel()
            await pool.close()
        gaps = [b - a for a, b in zip(ticks, ticks[1:])]
        return value_of(big), max(gaps)

    echoed, longest_gap = run(main())
    assert echoed == payload
    # The loop kept running while the worker slept with a full pipe in front of it.
    assert longest_gap < 0.4


def test_dead_worker_fails_its_call_and_requeues_the_rest(no_leaked_processes):
    async def main():
        pool = WorkerPool(2)
        try:
            # Teach the pool that calls are short, so calls queue deeply behind the one that dies.
            await asyncio.gather(*(pool.run(encode(identity, i)) for i in range(200)))
            assert pool.queue_depth == QUEUE_DEPTH_SHORT
            doomed = asyncio.create_task(pool.run(encode(die_after, 0.2)))
            await asyncio.sleep(0)
            rest = [asyncio.create_task(pool.run(encode(identity, i))) for i in range(40)]
            outcome = await asyncio.gather(doomed, return_exceptions=True)
            values = [value_of(r) for r in await asyncio.gather(*rest)]
            return outcome[0], values
        finally:
            await pool.close()

    error, values = run(main())
    assert isinstance(error, WorkerDied) and "exited with status 3" in str(error)
    assert values == list(range(40))


def test_cancelled_queued_call_does_not_disturb_others(no_leaked_processes):
    async def main():
        pool = WorkerPool(1)
        try:
            running = asyncio.create_task(pool.run(encode(nap, 0.3)))
            await asyncio.sleep(0.05)
            queued = asyncio.create_task(pool.run(encode(identity, "dropped")))
            after = asyncio.create_task(pool.run(encode(identity, "kept")))
            await asyncio.sleep(0.05)
            queued.cancel()
            return value_of(await running), value_of(await after)
        finally:
            await pool.close()

    assert run(main()) == (0.3, "kept")


@pytest.mark.parametrize("size", [0, 1, 65536, 200_000])
def test_record_sizes_round_trip(size, no_leaked_processes):
    async def main():
        pool = WorkerPool(2)
        try:
            return value_of(await pool.run(encode(identity, b"\x00" * size)))
        finally:
            await pool.close()

    assert run(main()) == b"\x00" * size
