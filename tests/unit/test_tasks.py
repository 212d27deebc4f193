"""`cancel_and_wait`: tasks end before it returns; the caller's own cancellation is not eaten."""

from __future__ import annotations

import asyncio

import pytest

from controller.tasks import cancel_and_wait


async def test_cancels_and_waits_for_the_cleanup_to_finish() -> None:
    cleaned: list[str] = []

    async def worker(name: str) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0)  # cleanup that itself awaits
            cleaned.append(name)

    tasks = [asyncio.create_task(worker(n)) for n in "ab"]
    await asyncio.sleep(0)
    await cancel_and_wait(tasks[0], None, tasks[1])
    assert sorted(cleaned) == ["a", "b"]
    assert all(t.cancelled() for t in tasks)


async def test_a_failure_is_raised_after_all_have_ended_unless_told_not_to() -> None:
    async def boom() -> None:
        raise RuntimeError("source gone")

    async def idle() -> None:
        await asyncio.Event().wait()

    failed = asyncio.create_task(boom())
    await asyncio.wait([failed])
    other = asyncio.create_task(idle())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="source gone"):
        await cancel_and_wait(failed, other)
    assert other.cancelled()  # ended too, before the failure was raised

    again = asyncio.create_task(boom())
    await asyncio.wait([again])
    await cancel_and_wait(again, raise_failure=False)


async def test_the_callers_cancellation_propagates() -> None:
    release = asyncio.Event()

    async def slow_to_stop() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await release.wait()  # holds the stopper in cancel_and_wait

    worker = asyncio.create_task(slow_to_stop())
    await asyncio.sleep(0)
    stopper = asyncio.create_task(cancel_and_wait(worker))
    await asyncio.sleep(0)
    stopper.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopper
    assert stopper.cancelled()
    release.set()
    await asyncio.wait([worker])


async def test_a_task_stopping_itself_does_not_wait_for_itself() -> None:
    async def stops_itself() -> str:
        me = asyncio.current_task()
        await cancel_and_wait(me)
        return "returned"

    assert await asyncio.wait_for(asyncio.create_task(stops_itself()), 5) == "returned"
