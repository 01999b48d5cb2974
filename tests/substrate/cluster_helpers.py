"""A recording scheduler for integration tests: launches queued tasks on offers and lets the
test wait (with timeouts, never sleeps) for the statuses and events it expects."""
from __future__ import annotations

import os
import sys
import threading
from typing import Callable, Optional

from substrate import (
    CommandInfo, ExecutorInfo, Filters, FrameworkInfo, Resources, Scheduler, SchedulerDriver,
    TaskInfo, TaskState,
)

HERE = os.path.dirname(os.path.abspath(__file__))
EXECUTOR_PROGRAM = os.path.join(HERE, "executor_program.py")


def test_executor(executor_id: str = "test-executor") -> ExecutorInfo:
    env = {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    return ExecutorInfo(executor_id=executor_id,
                        command=CommandInfo(sys.executable, [EXECUTOR_PROGRAM], environment=env),
                        resources=Resources(cpus=0.1, mem=32))


class Recorder(Scheduler):
    """Launches queued task specs on offers; records everything under one condition."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.statuses: list = []
        self.latest: dict = {}
        self.messages: list = []
        self.agents_lost: list = []
        self.executors_lost: list = []
        self.errors: list = []
        self.offers_seen = 0
        self.registrations = 0
        self.queue: list = []  # (task_id, resources, kind, payload, agent filter)
        self.placed: dict = {}
        self.refuse = 0.0
        self.per_offer = 1000  # most tasks launched on one offer

    # -- callbacks
    def registered(self, driver, framework_id, master_id):
        with self.cond:
            self.registrations += 1
            self.cond.notify_all()

    def reregistered(self, driver, master_id):
        self.registered(driver, driver.framework_id, master_id)

    def resource_offers(self, driver, offers):
        with self.cond:
            self.offers_seen += len(offers)
            for offer in offers:
                free, batch = offer.resources, []
                for spec in list(self.queue):
                    if len(batch) >= self.per_offer:
                        break
                    task_id, res, kind, payload, only_agent = spec
                    if only_agent and only_agent != offer.agent_id:
                        continue
                    need = res
                    executor = None
                    if kind == "executor":
                        executor = test_executor()
                        if executor.executor_id not in offer.executor_ids and not any(
                                t.executor for t in batch):
                            need = need + executor.resources
                    if not free.contains(need):
                        continue
                    free = free - need
                    self.queue.remove(spec)
                    task = TaskInfo(task_id=task_id, agent_id=offer.agent_id, resources=res,
                                    name=task_id, data=payload, executor=executor,
                                    command=None if executor else CommandInfo(payload.decode(), shell=True))
                    if executor:
                        task.data = payload
                    batch.append(task)
                    self.placed[task_id] = offer.agent_id
                # Idle: refuse for long (submit() revives), or an idle framework that wins
                # every DRF tie would take every offer back and starve its neighbours.
                refuse = self.refuse if self.queue else 60.0
                if batch:
                    driver.launch_tasks(offer.id, batch, Filters(refuse_seconds=refuse))
                else:
                    driver.decline_offer(offer.id, Filters(refuse_seconds=refuse))
            self.cond.notify_all()

    def status_update(self, driver, status):
        with self.cond:
            self.statuses.append(status)
            self.latest[status.task_id] = status
            self.cond.notify_all()

    def framework_message(self, driver, agent_id, executor_id, data):
        with self.cond:
            self.messages.append(data)
            self.cond.notify_all()

    def agent_lost(self, driver, agent_id):
        with self.cond:
            self.agents_lost.append(agent_id)
            self.cond.notify_all()

    def executor_lost(self, driver, agent_id, executor_id, status):
        with self.cond:
            self.executors_lost.append((agent_id, executor_id, status))
            self.cond.notify_all()

    def error(self, driver, message):
        with self.cond:
            self.errors.append(message)
            self.cond.notify_all()

    # -- test helpers
    def submit(self, driver: Optional[SchedulerDriver], task_id: str, *, cpus: float = 0.1,
               mem: float = 32, kind: str = "command", payload: bytes = b"true",
               agent: str = "") -> None:
        with self.cond:
            self.queue.append((task_id, Resources(cpus=cpus, mem=mem), kind, payload, agent))
        if driver is not None:
            driver.revive_offers()

    def wait(self, predicate: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
        with self.cond:
            if not self.cond.wait_for(predicate, timeout):
                raise AssertionError(f"timed out waiting for {what or predicate}: "
                                     f"latest={ {k: v.state.name for k, v in self.latest.items()} }")

    def wait_state(self, task_id: str, state: TaskState, timeout: float = 20.0):
        self.wait(lambda: task_id in self.latest and self.latest[task_id].state == state,
                  timeout, f"{task_id} {state.name}")
        return self.latest[task_id]


def start(master: str, recorder: Recorder, **info) -> SchedulerDriver:
    driver = SchedulerDriver(recorder, FrameworkInfo(name=info.pop("name", "test"), **info), master)
    driver.start()
    driver.wait_registered(timeout=20)
    return driver
