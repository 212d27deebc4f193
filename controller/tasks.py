"""Stopping background tasks: cancel, then wait until they have really ended.

One helper for what every component's ``stop()``/``close()`` does, with the details that are
easy to get wrong: the tasks' own cancellation is their result (not an error of the caller),
while the *caller's* cancellation must still propagate; a task never waits for itself (a
``stop()`` called from inside the task it stops); and every task's exception is retrieved.
"""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_and_wait(*tasks: asyncio.Future[Any] | None, raise_failure: bool = True) -> None:
    """Cancel `tasks` (None and finished ones are skipped) and wait until all have ended.

    A task that ended with an exception other than its cancellation (before or while being
    stopped) has that exception raised here once all have ended, the first such in argument
    order, as ``await task`` would; with ``raise_failure=False`` it is not (it is reported
    where the task is supervised). If the caller is cancelled while waiting, that cancellation
    is raised as usual.
    """
    current = asyncio.current_task()
    waiting = [t for t in tasks if t is not None and t is not current]
    for task in waiting:
        task.cancel()
    if not waiting:
        return
    await asyncio.wait(waiting)
    # Retrieved from every task, so asyncio does not log "exception was never retrieved".
    failures = [t.exception() for t in waiting if not t.cancelled()]
    first = next((exc for exc in failures if exc is not None), None)
    if first is not None and raise_failure:
        raise first
