"""The dataflow executor program: ``python -m dataflow.executor``, started by substrate agents.

One process per cpu slot, kept for the life of the Context. Each substrate task it is given
carries a signed ``Task.to_bytes()``; the executor checks the signature (an HMAC keyed by a
secret only this framework's driver and executors know), runs
:func:`dataflow.tasks.run_task` on a worker thread and reports FINISHED with the signed
:class:`~dataflow.tasks.TaskResult` bytes as the status data. Results too big for a status go
to a file in the framework directory and the status carries its relative path, which the
driver reads through the agent and then asks the executor to delete.

The work directory is ``ExecutorDriver.framework_dir``: map outputs outlive this process and
are served by the agent to reducers elsewhere (:mod:`dataflow.remote_fetch`). Broadcast values
are read from the driver's broadcast directory when it is on this machine, otherwise requested
from the driver with a framework message. What to run, where, and what to do when an executor
dies is the driver's business (:mod:`dataflow.cluster_backend`).

Wire format of framework messages (first byte is the kind):

* executor → driver: ``P`` + JSON ``{"pid", "location"}`` once registered; ``B`` + broadcast
  id (a request); ``r`` + relative path (a result file was deleted).
* driver → executor: ``U`` + rdd id (drop cached partitions), ``D`` + broadcast id (forget),
  ``R`` + relative path (delete a result file), ``B`` + id + NUL + flag + signed value,
  ``F`` (files were shipped: fetch them from the driver, :mod:`dataflow.shipping`).
"""
from __future__ import annotations

import json
import logging
import os
import sys
import threading
import uuid
from collections import deque
from typing import Any

import lz4.block

import substrate

from .errors import DataflowError
from .remote_fetch import RemoteBlockFetcher, make_location
from .serialize import loads
from .tasks import DEFAULT_MEMORY, ExecutorEnv, run_task, tune_gc

log = logging.getLogger("dataflow.executor")

#: Task results larger than this travel as a file reference instead of in the status.
INLINE_RESULT_LIMIT = int(3.5 * 1024 * 1024)
ENV_SECRET = "DATAFLOW_SECRET"
ENV_MEMORY = "DATAFLOW_MEMORY_BUDGET"
ENV_BROADCAST_DIR = "DATAFLOW_BROADCAST_DIR"
BROADCAST_TIMEOUT = 120.0


def sign(key: bytes, payload: bytes) -> bytes:
    """``payload`` sealed with the framework's key (:class:`substrate.PayloadKey`)."""
    return substrate.PayloadKey(key).seal(payload)


def verify(key: bytes, data: bytes) -> bytes:
    """The payload of ``sign(key, payload)``; raises DataflowError when the MAC is wrong."""
    try:
        return substrate.PayloadKey(key).open(data)
    except substrate.PayloadRejected:
        raise DataflowError("payload signature mismatch: refusing to unpickle it") from None


class DataflowExecutor(substrate.Executor):
    """Runs dataflow tasks; keeps a partition cache and broadcasts between them."""

    def __init__(self, secret: bytes, memory_budget: int, broadcast_dir: str) -> None:
        self.secret = secret
        self.memory_budget = memory_budget
        self.broadcast_dir = broadcast_dir
        self.env: ExecutorEnv | None = None
        self.killed: set[str] = set()
        self._waiting: dict[int, tuple[threading.Event, list]] = {}
        self._queue: deque[substrate.TaskInfo] = deque()
        self._more = threading.Event()
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()
        self._driver: substrate.ExecutorDriver | None = None

    # -- substrate callbacks -----------------------------------------------------------
    def registered(self, driver: substrate.ExecutorDriver, executor_info: Any,
                   framework_info: Any, agent_info: Any) -> None:
        self._driver = driver
        location = make_location(driver.executor_id, driver.agent_address, driver.framework_id)
        work = driver.framework_dir
        self.env = ExecutorEnv(location, work, self.memory_budget,
                               fetcher=RemoteBlockFetcher(os.path.join(work, "shuffle"),
                                                          driver.agent_address),
                               broadcast_loader=self._load_broadcast)
        driver.send_framework_message(
            b"P" + json.dumps({"pid": os.getpid(), "location": location}).encode())

    def launch_task(self, driver: substrate.ExecutorDriver, task: substrate.TaskInfo) -> None:
        if not task.data:  # a warm-up task: the process is up, nothing to run
            driver.update(task.task_id, substrate.TaskState.RUNNING)
            driver.update(task.task_id, substrate.TaskState.FINISHED)
            return
        # The driver keeps a second task queued here so the next one starts without waiting
        # for an offer round trip; one worker runs them in order (one cpu slot).
        with self._lock:
            self._queue.append(task)
            start = self._worker is None
            if start:
                self._worker = threading.Thread(target=self._work, args=(driver,), daemon=True,
                                                name="dataflow-task-worker")
        if start:
            self._worker.start()  # type: ignore[union-attr]
        else:
            self._more.set()

    def kill_task(self, driver: substrate.ExecutorDriver, task_id: str) -> None:
        # Python threads cannot be stopped: report KILLED now; a queued task is skipped and a
        # running one's result dropped.
        with self._lock:
            self.killed.add(task_id)
        driver.update(task_id, substrate.TaskState.KILLED, "killed by the driver")

    def framework_message(self, driver: substrate.ExecutorDriver, data: bytes) -> None:
        kind, body = data[:1], data[1:]
        env = self.env
        if kind == b"U" and env is not None:
            env.drop_rdd(int(body))
        elif kind == b"D" and env is not None:
            env.broadcasts.pop(int(body), None)
        elif kind == b"R":
            path = os.path.join(driver.framework_dir, body.decode())
            try:
                os.unlink(path)
            except OSError:
                pass
            driver.send_framework_message(b"r" + body)
        elif kind == b"F":  # files shipped after this executor started
            from .shipping import sync
            sync("added by the driver")
        elif kind == b"B":
            head, _, rest = body.partition(b"\0")
            with self._lock:
                waiter = self._waiting.pop(int(head), None)
            if waiter is not None:
                waiter[1].append(rest)
                waiter[0].set()

    # -- running ------------------------------------------------------------------------
    def _work(self, driver: substrate.ExecutorDriver) -> None:
        while True:
            with self._lock:
                task = self._queue.popleft() if self._queue else None
                if task is None:
                    self._more.clear()
                elif task.task_id in self.killed:
                    self.killed.discard(task.task_id)
                    continue
            if task is None:
                self._more.wait()
                continue
            driver.update(task.task_id, substrate.TaskState.RUNNING)
            try:
                self._run(driver, task)
            except Exception as exc:
                log.exception("task %s", task.task_id)
                driver.update(task.task_id, substrate.TaskState.FAILED, f"executor error: {exc}")

    def _run(self, driver: substrate.ExecutorDriver, task: substrate.TaskInfo) -> None:
        try:
            data = verify(self.secret, task.data)
        except DataflowError as exc:
            driver.update(task.task_id, substrate.TaskState.ERROR, str(exc))
            return
        assert self.env is not None
        result = sign(self.secret, run_task(data, self.env))
        with self._lock:
            if task.task_id in self.killed:
                self.killed.discard(task.task_id)
                return
        limit = min(INLINE_RESULT_LIMIT, driver.max_payload_bytes - 64 * 1024)
        if len(result) + 1 <= limit:
            driver.update(task.task_id, substrate.TaskState.FINISHED, data=b"I" + result)
            return
        rel = f"results/{task.task_id}-{uuid.uuid4().hex}"
        path = os.path.join(driver.framework_dir, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path + ".tmp", "wb") as f:
            f.write(result)
        os.replace(path + ".tmp", path)
        driver.update(task.task_id, substrate.TaskState.FINISHED, data=b"F" + rel.encode())

    def _load_broadcast(self, bid: int) -> Any:
        path = os.path.join(self.broadcast_dir, f"broadcast_{bid}")
        try:
            with open(path, "rb") as f:
                return loads(lz4.block.decompress(f.read()))
        except FileNotFoundError:
            pass  # the driver is on another machine (or the value was destroyed): ask it
        event, box = threading.Event(), []
        with self._lock:
            self._waiting[bid] = (event, box)
        assert self._driver is not None
        self._driver.send_framework_message(b"B" + str(bid).encode())
        if not event.wait(BROADCAST_TIMEOUT):
            raise DataflowError(f"broadcast {bid}: no answer from the driver")
        reply = box[0]
        if reply[:1] != b"1":
            raise DataflowError(f"broadcast {bid} was destroyed")
        return loads(lz4.block.decompress(verify(self.secret, reply[1:])))


def main() -> int:
    """Entry point of the executor process."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    tune_gc()
    secret = bytes.fromhex(os.environ.get(ENV_SECRET, ""))
    if not secret:
        print("dataflow.executor: DATAFLOW_SECRET is not set", file=sys.stderr)
        return 2
    from .shipping import sync
    sync("executor start")  # files the driver added after this executor's command was made
    executor = DataflowExecutor(secret, int(os.environ.get(ENV_MEMORY, DEFAULT_MEMORY)),
                                os.environ.get(ENV_BROADCAST_DIR, ""))
    return substrate.ExecutorDriver(executor).run()


if __name__ == "__main__":
    sys.exit(main())
