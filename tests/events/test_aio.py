"""cancel_and_wait ends a task even when it swallows a cancellation (Python 3.11's
wait_for does so when the awaited result arrives in the same loop turn)."""

from __future__ import annotations

import asyncio

from events.aio import cancel_and_wait


async def test_a_task_that_swallows_its_first_cancellation_is_still_ended() -> None:
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            swallowed += 1  # as wait_for does when its result raced the cancellation
        await asyncio.Event().wait()  # goes on waiting: only a second cancel ends it

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait([task]), 10)
    assert swallowed == 1 and task.cancelled()


async def test_finished_tasks_are_left_as_they_are() -> None:
    async def done() -> int:
        return 7

    task = asyncio.create_task(done())
    await task
    await cancel_and_wait([task])
    assert task.result() == 7
