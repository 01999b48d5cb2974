"""An executor for the isolation tests (started by a real agent as a child process).

Task ``data``: ``b"alloc:N"`` -- RUNNING, then allocate and touch N MiB (a memory hog);
``b"hang"`` -- RUNNING, then nothing until killed.
"""
import sys

from substrate import Executor, ExecutorDriver, TaskState

HELD = []


class HogExecutor(Executor):
    def launch_task(self, driver, task):
        driver.update(task.task_id, TaskState.RUNNING)
        if task.data.startswith(b"alloc:"):
            for _ in range(int(task.data[6:])):
                HELD.append(bytearray(b"\x01") * 2**20)   # written, so resident


if __name__ == "__main__":
    sys.exit(ExecutorDriver(HogExecutor()).run())
