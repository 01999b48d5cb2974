"""Evaluation-farm mode: islands evolve in the caller's process, fitness runs on the substrate.

For fitness functions that are expensive (a simulation, a model fit), the population work is
cheap next to evaluation, so ``evolve(..., farm=True, master="local[N]" | "HOST:PORT")`` keeps
the inline lockstep engine and sends each generation's new genomes out as *batches*: one task
per batch, run by reusable executors (``python -m genetic.farm``, one evaluation at a time
each, so a Python fitness really runs in parallel). A batch is keyed by the hashes of its
genomes; results are stored by genome hash, so a batch that finishes twice (a slow original
and its re-queued copy) is harmless; a batch whose task is lost with its executor or agent is
re-queued on the next offer. A fitness error raised in an executor stops the run.

The problem travels once per executor, pickled in ``ExecutorInfo.data`` (framework to its own
executor only); genomes and results travel as :mod:`genetic.protocol` frames.
"""
from __future__ import annotations

import copy
import json
import os
import sys
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

import substrate
from substrate import (
    Executor,
    ExecutorDriver,
    ExecutorInfo,
    Filters,
    FrameworkInfo,
    Resources,
    Scheduler,
    SchedulerDriver,
    Source,
    TaskInfo,
    TaskState,
    TaskStatus,
)

from .errors import ConfigError, FitnessError, GeneticError
from .population import genome_hashes
from .problem import Evaluation
from .protocol import decode, encode, pack_spec, unpack_spec

__all__ = ["FarmScheduler", "run_farm"]

EXECUTOR_CPUS = 0.01
EXECUTOR_MEM = 32.0


@dataclass
class _Batch:
    key: str
    genomes: np.ndarray
    attempt: int = 0
    task_id: str = ""
    executor: tuple[str, str] | None = None     # (agent id, executor id) while launched
    done: bool = False


class FarmScheduler(Scheduler):
    """Runs queued evaluation batches on offers; re-queues lost ones."""

    def __init__(self, problem_data: bytes, task_resources: Resources, t0: float) -> None:
        self.problem_data = problem_data
        self.task_resources = task_resources
        self.executor_resources = Resources(cpus=EXECUTOR_CPUS, mem=EXECUTOR_MEM)
        self.t0 = t0
        self.cond = threading.Condition()
        self.queue: deque[_Batch] = deque()
        self.by_task: dict[str, _Batch] = {}
        self.results: dict[int, np.ndarray] = {}
        self.errors: dict[int, str] = {}
        self.idle: dict[str, list[str]] = {}         # agent id -> idle executor ids
        self.executors = 0
        self.failure: BaseException | None = None
        self.events: list[dict[str, Any]] = []
        self.driver: SchedulerDriver | None = None

    def _event(self, kind: str, **info: Any) -> None:
        self.events.append(dict(info, event=kind,
                                seconds=round(time.perf_counter() - self.t0, 6)))

    # -- submitting (caller's thread) ---------------------------------------------------------

    def submit(self, batches: list[_Batch]) -> None:
        with self.cond:
            for b in batches:
                b.task_id = f"eval-{b.key}-{b.attempt}"
                self.by_task[b.task_id] = b
                self.queue.append(b)
        assert self.driver is not None
        self.driver.revive_offers()

    # -- offers -------------------------------------------------------------------------------

    def _executor(self, eid: str) -> ExecutorInfo:
        return ExecutorInfo.for_python_module(
            eid, "genetic.farm", name="genetic evaluation farm",
            resources=self.executor_resources, data=self.problem_data)

    def resource_offers(self, driver: SchedulerDriver, offers: list) -> None:
        with self.cond:
            for offer in offers:
                free, tasks = offer.resources, []
                idle = self.idle.setdefault(offer.agent_id, [])
                idle[:] = [e for e in idle if e in offer.executor_ids]
                while self.queue:
                    reuse = bool(idle)
                    need = self.task_resources + (Resources() if reuse
                                                  else self.executor_resources)
                    if not free.contains(need):
                        break
                    b = self.queue.popleft()
                    if b.done:
                        continue
                    if reuse:
                        eid = idle.pop()
                    else:
                        eid = f"genetic-farm-{self.executors}"
                        self.executors += 1
                    free = free - need
                    b.executor = (offer.agent_id, eid)
                    tasks.append(TaskInfo(task_id=b.task_id, agent_id=offer.agent_id,
                                          resources=self.task_resources,
                                          name=f"evaluate {b.genomes.shape[0]} genomes",
                                          executor=self._executor(eid),
                                          data=encode("batch", {}, {"genomes": b.genomes})))
                if tasks:
                    driver.launch_tasks(offer.id, tasks)
                else:
                    driver.decline_offer(offer.id, Filters(refuse_seconds=5))
            if not self.queue:
                driver.suppress_offers()

    # -- results ------------------------------------------------------------------------------

    def status_update(self, driver: SchedulerDriver, status: TaskStatus) -> None:
        with self.cond:
            b = self.by_task.get(status.task_id)
            if b is None:
                return
            if status.state == TaskState.RUNNING:
                info = json.loads(status.data or b"{}")
                self._event("running", batch=b.key, attempt=b.attempt, pid=info.get("pid"))
                return
            if not status.state.is_terminal:
                return
            del self.by_task[status.task_id]
            if b.executor is not None and status.task_id == b.task_id:
                agent, eid = b.executor
                if status.state == TaskState.FINISHED:
                    self.idle.setdefault(agent, []).append(eid)
                b.executor = None
            if status.state == TaskState.FINISHED:
                if not b.done:
                    self._store(b, status.data)
            elif status.state == TaskState.FAILED and status.source == Source.EXECUTOR:
                self.failure = FitnessError(f"evaluation batch {b.key} failed: {status.message}")
            elif not b.done and status.task_id == b.task_id:
                b.attempt += 1
                b.task_id = f"eval-{b.key}-{b.attempt}"
                self.by_task[b.task_id] = b
                self.queue.append(b)
                self._event("requeue", batch=b.key, attempt=b.attempt,
                            state=status.state.name, reason=status.reason.name)
                driver.revive_offers()
            self.cond.notify_all()

    def _store(self, b: _Batch, data: bytes) -> None:
        _, header, arrays = decode(data)
        hashes = arrays["hashes"]
        rows = np.column_stack([arrays["fitness"], arrays["viable"].astype(float),
                                arrays["violation"]])
        for h, row in zip(hashes.tolist(), rows):
            self.results[h] = row
        for j, text in header.get("errors", {}).items():
            self.errors[int(hashes[int(j)])] = text
        b.done = True

    def error(self, driver: SchedulerDriver, message: str) -> None:
        self._event("master_error", message=message)


class FarmEvaluator:
    """Stands in for :meth:`Problem.evaluate` in the caller's islands."""

    def __init__(self, problem: Any, sched: FarmScheduler, driver: SchedulerDriver,
                 batch_size: int) -> None:
        self.problem = problem
        self.sched = sched
        self.driver = driver
        self.batch_size = batch_size
        self.calls = 0

    def evaluate(self, rows: np.ndarray) -> Evaluation:
        n, m = rows.shape[0], self.problem.objectives
        if n == 0:
            return Evaluation(np.empty((0, m)), np.ones(0, bool), np.zeros(0), {}, 0)
        hashes = genome_hashes(self.problem.genome, rows)
        _, first = np.unique(hashes, return_index=True)
        first = np.sort(first)
        batches = []
        for start in range(0, first.size, self.batch_size):
            idx = first[start:start + self.batch_size]
            key = f"{self.calls}-{start // self.batch_size}-{int(hashes[idx[0]]):016x}"
            batches.append(_Batch(key, np.ascontiguousarray(rows[idx])))
        self.calls += 1
        sched = self.sched
        sched.submit(batches)
        with sched.cond:
            while not all(b.done for b in batches):
                if sched.failure is not None:
                    raise sched.failure
                if not self.driver.running:
                    raise GeneticError("the evaluation farm lost its master")
                sched.cond.wait(0.25)
            table = [sched.results.pop(int(h), None) for h in hashes]
            found = {int(h): sched.errors.pop(int(h)) for h in set(hashes.tolist())
                     if int(h) in sched.errors}
            errors = {i: found[int(h)] for i, h in enumerate(hashes) if int(h) in found}
        for i, row in enumerate(table):          # duplicates within the call
            if row is None:
                j = int(np.flatnonzero(hashes == hashes[i])[0])
                table[i] = table[j]
        arr = np.vstack(table)
        return Evaluation(arr[:, :m].copy(), arr[:, m].astype(bool), arr[:, m + 1].copy(),
                          errors, n)


def run_farm(run: Any, master: str, go_args: dict[str, Any], *, batch_size: int = 64,
             island_cpus: float | None = None, t0: float | None = None) -> Any:
    """Run the inline engine with evaluations farmed out to executors of ``master``."""
    from .framework import FAILOVER_TIMEOUT, REGISTER_TIMEOUT, _local_slots
    t0 = time.perf_counter() if t0 is None else t0
    if batch_size < 1:
        raise ConfigError("batch_size must be >= 1")
    slots = _local_slots(master)
    share = island_cpus if island_cpus is not None else 1.0
    task = Resources(cpus=round(share - EXECUTOR_CPUS, 6), mem=128.0)
    original = run.problem
    sched = FarmScheduler(pack_spec({"problem": original}), task, t0)
    cluster = driver = None
    try:
        if slots is not None:
            cluster = substrate.LocalCluster(agents=1, cpus=float(slots)).start()
            address = cluster.master
        else:
            address = master
        driver = SchedulerDriver(sched, FrameworkInfo(name=f"genetic farm: {original!r}"[:200],
                                                      failover_timeout=FAILOVER_TIMEOUT),
                                 address)
        sched.driver = driver
        driver.start()
        try:
            driver.wait_registered(timeout=REGISTER_TIMEOUT)
        except substrate.SubstrateError as exc:
            raise GeneticError(f"could not register with the master at {address}: {exc}") \
                from exc
        proxy = copy.copy(original)
        proxy.evaluate = FarmEvaluator(original, sched, driver, batch_size).evaluate
        run.problem = proxy
        for isl in run.islands or []:
            isl.problem = proxy
        result = run.go(**go_args)
    finally:
        run.problem = original
        for isl in run.islands or []:
            isl.problem = original
        if driver is not None:
            driver.stop()
        if cluster is not None:
            cluster.stop()
    result.events = sched.events
    return result


# ---------------------------------------------------------------------------------------------


class FarmExecutor(Executor):
    """Evaluates batches of genomes, one at a time, with the problem from ExecutorInfo.data."""

    def __init__(self) -> None:
        self.problem: Any = None
        self.lock = threading.Lock()

    def registered(self, driver, executor_info, framework_info, agent_info) -> None:
        self.problem = unpack_spec(executor_info.data)["problem"]

    def launch_task(self, driver: ExecutorDriver, task: TaskInfo) -> None:
        threading.Thread(target=self._run, args=(driver, task), daemon=True).start()

    def _run(self, driver: ExecutorDriver, task: TaskInfo) -> None:
        with self.lock:
            driver.update(task.task_id, TaskState.RUNNING,
                          data=json.dumps({"pid": os.getpid()}).encode())
            try:
                _, _, arrays = decode(task.data)
                genomes = arrays["genomes"]
                ev = self.problem.evaluate(genomes)
                hashes = genome_hashes(self.problem.genome, genomes)
                out = encode("result", {"errors": {str(k): v for k, v in ev.errors.items()}},
                             {"hashes": hashes, "fitness": ev.fitness,
                              "viable": ev.viable, "violation": ev.violation})
            except Exception:  # noqa: BLE001 - a fitness failure is the batch's FAILED
                driver.update(task.task_id, TaskState.FAILED, traceback.format_exc()[-8000:])
                return
            driver.update(task.task_id, TaskState.FINISHED, data=out)


if __name__ == "__main__":
    sys.exit(ExecutorDriver(FarmExecutor()).run())
