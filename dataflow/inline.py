"""The inline backend: tasks run one after another in the driver thread.

It exists for debugging and for tests, and it runs every task exactly as an executor will:
the task is turned into bytes, handed to :func:`~dataflow.tasks.run_task`, and the result comes
back as bytes, so serialisation bugs show up here too. Map outputs go to the context's work
directory and are read back through the same :class:`~dataflow.shuffle.LocalBlockFetcher` an
executor uses.

Examples
--------
>>> import tempfile
>>> backend = InlineBackend(tempfile.mkdtemp())
>>> backend.default_parallelism
1
>>> backend.poll()
[]
"""
from __future__ import annotations

import os
from collections import deque

from .tasks import DEFAULT_MEMORY, ExecutorEnv, Task, TaskBackend, TaskEnded, run_task

EXECUTOR_ID = "inline"


class InlineBackend(TaskBackend):
    """Runs queued tasks in the calling thread when polled."""

    def __init__(self, work_dir: str, memory_budget: int = DEFAULT_MEMORY,
                 parallelism: int = 1) -> None:
        self.env = ExecutorEnv(EXECUTOR_ID, os.path.join(work_dir, "executor"), memory_budget)
        self.default_parallelism = parallelism
        self.queue: deque[Task] = deque()
        self.tasks_run = 0

    def launch(self, task: Task) -> None:
        self.queue.append(task)

    def kill(self, task_id: int) -> None:
        self.queue = deque(t for t in self.queue if t.task_id != task_id)

    def poll(self, timeout: float | None = None) -> list:
        if not self.queue:
            return []
        task = self.queue.popleft()
        self.tasks_run += 1
        return [TaskEnded(task.task_id, run_task(task.to_bytes(), self.env))]

    def has_pending(self) -> bool:
        return bool(self.queue)

    def unpersist(self, rdd_id: int) -> None:
        self.env.drop_rdd(rdd_id)

    def drop_broadcast(self, broadcast_id: int) -> None:
        self.env.broadcasts.pop(broadcast_id, None)

    def stop(self) -> None:
        self.queue.clear()
        self.env.cache.clear()
