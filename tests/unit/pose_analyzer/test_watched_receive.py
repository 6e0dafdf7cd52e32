"""WatchedReceive: a watched future ends a wait for a message, and only a wait."""

from __future__ import annotations

import asyncio

import pytest

from pose_analyzer.streaming.watched import WatchedReceive, WatchFiredError


def _watching() -> tuple[asyncio.Queue[str], asyncio.Future[None], WatchedReceive]:
    """An empty queue to receive from, and a WatchedReceive watching one pending future."""
    watch: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    watched = WatchedReceive()
    watched.watch(watch)
    return asyncio.Queue(), watch, watched


async def test_a_message_that_comes_is_returned() -> None:
    queue: asyncio.Queue[str] = asyncio.Queue()
    watched = WatchedReceive()
    watched.watch(asyncio.get_running_loop().create_future())  # never completes
    queue.put_nowait("hello")
    assert await watched.receive(queue.get) == "hello"


async def test_a_watch_that_completes_during_the_wait_ends_it_and_the_message_stays_queued() -> None:
    queue, watch, watched = _watching()
    receiving = asyncio.ensure_future(watched.receive(queue.get))
    await asyncio.sleep(0)  # now waiting in queue.get
    watch.set_result(None)
    with pytest.raises(WatchFiredError):
        await receiving
    queue.put_nowait("later")
    assert await watched.receive(queue.get) == "later"  # the next wait is not cancelled


async def test_a_failed_watch_ends_the_wait_too() -> None:
    queue: asyncio.Queue[str] = asyncio.Queue()
    watched = WatchedReceive()

    async def fail() -> None:
        await asyncio.sleep(0)
        raise ValueError("processor failed")

    watched.watch(asyncio.ensure_future(fail()))
    with pytest.raises(WatchFiredError):
        await watched.receive(queue.get)


async def test_a_watch_done_while_not_waiting_does_not_cancel_a_later_wait() -> None:
    queue, watch, watched = _watching()
    watch.set_result(None)
    await asyncio.sleep(0)  # its done callback runs now, with nobody waiting
    asyncio.get_running_loop().call_soon(queue.put_nowait, "x")
    assert await watched.receive(queue.get) == "x"


async def test_cancelling_the_task_from_elsewhere_is_a_cancellation_not_a_watch() -> None:
    queue, _watch, watched = _watching()
    receiving = asyncio.ensure_future(watched.receive(queue.get))
    await asyncio.sleep(0)
    receiving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await receiving


async def test_a_watch_and_an_outside_cancel_together_stay_a_cancellation() -> None:
    queue, watch, watched = _watching()
    receiving = asyncio.ensure_future(watched.receive(queue.get))
    await asyncio.sleep(0)
    watch.set_result(None)
    receiving.cancel()  # before the watch's callback runs: both cancels are pending
    with pytest.raises(asyncio.CancelledError):
        await receiving
