"""Islands on the substrate: the genetic framework's scheduler and the driver side of
``evolve(master="local[N]" | "HOST:PORT")``.

:class:`GeneticScheduler` launches one long-running executor (``python -m genetic.executor``)
per island from offers, relays synchronous migrants between islands along the topology, collects the
islands' statistics rows (array batches, into a :class:`genetic.history.History`), keeps every island's latest checkpoint state in memory (and
writes the run checkpoint when asked), applies the run-wide stopping rules, and relaunches an
island whose task ends LOST/FAILED by its executor or agent from its last state on the next
offer. :func:`run_distributed` owns the lifetime: an embedded :class:`substrate.LocalCluster`
for ``local[N]``, the :class:`substrate.SchedulerDriver`, progress on a terminal, and
teardown on success, error or Ctrl-C.

Synchronous mode (the default with a seed) routes an epoch's migrants only once every island
has sent its emigrants for that epoch, drawing random targets in island order from the same
generator as ``master="inline"``; islands wait for their immigrants. That makes a seeded run
equal to the inline one, and a relaunched island replays the immigrants it already had, so
even a run with a killed island gives the same result. In asynchronous mode the islands
exchange migrants through files on their agents (see :mod:`genetic.executor`); the scheduler
only tells them where their peers run.

The evolution loop itself is :class:`genetic.island.Island` in the executor; the result is
assembled by the inline engine's code from the islands' final states.
"""
from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

import substrate
from substrate import (
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

from .checkpoint import write_checkpoint
from .engine import _jsonable, migration_targets
from .errors import ConfigError, GeneticError
from .history import History
from .island import Island
from .population import Population
from .progress import resolve as resolve_progress
from .status import publish as publish_status
from .protocol import (
    PAYLOAD_LIMIT,
    decode,
    encode,
    pack_population,
    pack_spec,
    pack_state,
    unpack_population,
    unpack_state,
)

__all__ = ["GeneticScheduler", "migration_targets", "run_distributed"]

_LOCAL = re.compile(r"^local(?:\[(\d+)\])?$")
#: How many times one island may be relaunched before the run gives up.
MAX_RELAUNCHES = 5
#: Seconds to wait for the master to accept the framework.
REGISTER_TIMEOUT = 30.0
#: How long the master keeps the islands when the stream to it breaks: a transient break
#: re-subscribes and the run goes on; a driver gone for good loses its islands at this deadline.
FAILOVER_TIMEOUT = 20.0
EXECUTOR_CPUS = 0.01
EXECUTOR_MEM = 32.0
#: An island also sends its statistics every this many generations (None: only on time,
#: every ``Plan.report_seconds``).
REPORT_GENERATIONS: int | None = None


@dataclass
class _Slot:
    """The scheduler's view of one island."""

    index: int
    attempt: int = 0
    phase: str = "pending"        # pending -> launched -> running -> done
    task_id: str = ""
    agent_id: str = ""
    pid: int | None = None
    address: str = ""             # its agent's address (where its migrant file is)
    start_generation: int = 0
    state: bytes | None = None    # latest state frame: what a relaunch continues from
    state_generation: int = 0
    final: dict[str, Any] | None = None
    generation: int = 0
    evaluations: int = 0
    best_w: float = float("-inf")

    @property
    def executor_id(self) -> str:
        return self.task_id


@dataclass
class Plan:
    """What every island is told about the run."""

    generations: int
    migration_interval: int
    migrants: int
    checkpoint_every: int | None
    synchronous: bool
    islands: int
    w_target: float | None = None
    # statistics rows travel as column arrays through the master in the driver process, in
    # batches: twice a second keeps that cost small at thousands of generations per second
    report_seconds: float = 0.5
    # and a batch at least every this many generations (None: time only)
    report_generations: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class _Rules:
    max_evaluations: int | None = None
    max_seconds: float | None = None
    w_target: float | None = None
    stagnation: int | None = None


class GeneticScheduler(Scheduler):
    """Places islands on offers, relays migrants, keeps states, relaunches lost islands."""

    def __init__(self, run: Any, plan: Plan, rules: _Rules, task_resources: Resources, *,
                 checkpoint: str | None = None, on_progress: Any = None,
                 t0: float | None = None) -> None:
        self.run = run                 # genetic.engine._Run: problem, settings, seeds, rng, ...
        self.plan = plan
        self.rules = rules
        self.task_resources = task_resources
        self.executor_resources = Resources(cpus=EXECUTOR_CPUS, mem=EXECUTOR_MEM)
        self.checkpoint = checkpoint
        self.on_progress = on_progress
        self.t0 = time.perf_counter() if t0 is None else t0
        self.lock = threading.RLock()
        self.done = threading.Event()
        self.failure: BaseException | None = None
        self.stopped_by: str | None = None
        self.events: list[dict[str, Any]] = []
        n = plan.islands
        self.slots = [_Slot(i) for i in range(n)]
        self.by_task: dict[str, _Slot] = {}
        self.history: History = run.history
        self.first_seen = False
        self.best: float | None = run.best
        self.best_generation = run.generation
        self.since_improvement = run.since_improvement
        self.pending_mig: dict[int, dict[int, Population]] = {}
        self.routed: set[int] = set()
        self.delivered: list[dict[int, bytes]] = [{} for _ in range(n)]
        self.cuts: dict[int, dict[int, dict[str, Any]]] = {}
        self.suppressed = False
        if run.islands is not None:               # resuming: islands start from their states
            for slot, isl in zip(self.slots, run.islands):
                header, arrays = pack_state(isl.state())
                slot.state = encode("state", dict(header, island=slot.index,
                                                  generation=isl.generation), arrays)
                slot.state_generation = slot.generation = isl.generation
                slot.evaluations = isl.evaluations
        self._new_tasks()

    # -- helpers ------------------------------------------------------------------------------

    def _event(self, kind: str, **info: Any) -> None:
        self.events.append(dict(info, event=kind,
                                seconds=round(time.perf_counter() - self.t0, 6)))

    def _new_tasks(self) -> None:
        for slot in self.slots:
            if slot.phase == "pending" and not slot.task_id:
                slot.task_id = f"island-{slot.index}-{slot.attempt}"
                self.by_task[slot.task_id] = slot

    def _executor_info(self, slot: _Slot) -> ExecutorInfo:
        return ExecutorInfo.for_python_module(
            slot.executor_id, "genetic.executor", name=f"genetic island {slot.index}",
            resources=self.executor_resources)

    def _spec(self, slot: _Slot) -> bytes:
        run = self.run
        data = pack_spec({"problem": run.problem, "settings": run.settings[slot.index],
                          "island": slot.index, "seed": run.seeds[slot.index],
                          "topology": run.topology,
                          "state": slot.state, "plan": self.plan.as_dict()})
        if len(data) > 4 * 1024 * 1024 - 4096:
            raise GeneticError(f"island {slot.index}'s task payload is {len(data)} bytes, above "
                               f"the substrate's 4 MiB cap (large problem data or population)")
        return data

    def _fail(self, exc: BaseException) -> None:
        if self.failure is None:
            self.failure = exc
        self.done.set()

    def _send(self, driver: SchedulerDriver, slot: _Slot, frame: bytes) -> None:
        if slot.phase in ("launched", "running") and slot.agent_id:
            driver.send_framework_message(slot.agent_id, slot.executor_id, frame)

    # -- offers -------------------------------------------------------------------------------

    def resource_offers(self, driver: SchedulerDriver, offers: list) -> None:
        with self.lock:
            need = self.task_resources + self.executor_resources
            for offer in offers:
                free, batch = offer.resources, []
                for slot in self.slots:
                    if slot.phase != "pending" or self.done.is_set() or not free.contains(need):
                        continue
                    try:
                        data = self._spec(slot)
                    except Exception as exc:  # noqa: BLE001 - unpicklable problem, too large
                        self._fail(exc)
                        break
                    free = free - need
                    slot.phase, slot.agent_id = "launched", offer.agent_id
                    batch.append(TaskInfo(task_id=slot.task_id, agent_id=offer.agent_id,
                                          resources=self.task_resources,
                                          name=f"genetic island {slot.index}",
                                          executor=self._executor_info(slot), data=data))
                    self._event("launched", island=slot.index, attempt=slot.attempt,
                                generation=slot.state_generation if slot.state else 0)
                if batch:
                    driver.launch_tasks(offer.id, batch)
                else:
                    driver.decline_offer(offer.id, Filters(refuse_seconds=5))
            if not any(s.phase == "pending" for s in self.slots):
                driver.suppress_offers()
                self.suppressed = True

    # -- statuses -----------------------------------------------------------------------------

    def status_update(self, driver: SchedulerDriver, status: TaskStatus) -> None:
        with self.lock:
            slot = self.by_task.get(status.task_id)
            if slot is None or slot.task_id != status.task_id or slot.phase == "done":
                return
            state = status.state
            if state == TaskState.RUNNING:
                if slot.phase == "running":
                    return
                info = json.loads(status.data or b"{}")
                slot.phase, slot.pid = "running", info.get("pid")
                slot.start_generation = int(info.get("generation", 0))
                self._event("running", island=slot.index, attempt=slot.attempt, pid=slot.pid,
                            generation=slot.start_generation)
                if self.plan.synchronous:        # replay what the island had before it died
                    for epoch in sorted(self.delivered[slot.index]):
                        if epoch > slot.start_generation:
                            self._send(driver, slot, self.delivered[slot.index][epoch])
                else:                            # migrants go island to island, through files
                    slot.address = str(info.get("address", ""))
                    self._send_peers(driver)
                if self.stopped_by is not None:
                    self._send(driver, slot, encode("stop"))
                self._progress()
            elif state == TaskState.FINISHED:
                try:
                    _, header, arrays = self._decode(driver, status.data)
                    slot.final = unpack_state(header, arrays)
                    # every row of the attempt: those its batches brought are kept (and
                    # compared), the others filled in
                    new, agreed, differed = self.history.add(
                        slot.index, _rows(arrays), fill_only=True, limit=self.plan.generations)
                except Exception as exc:  # noqa: BLE001 - bad frame, unreadable file
                    self._fail(GeneticError(f"island {slot.index} sent a bad final state: {exc}"))
                    return
                slot.phase = "done"
                slot.generation = int(slot.final["meta"]["generation"])
                self._event("finished", island=slot.index, generation=slot.generation,
                            immigrants=int(slot.final["meta"].get("immigrants", 0)),
                            cpu=float(header.get("cpu", 0.0)), rows_batched=agreed,
                            rows_filled=new, rows_differed=differed)
                self._maybe_done()
            elif state.is_terminal:
                self._lost(driver, slot, status)

    def _lost(self, driver: SchedulerDriver, slot: _Slot, status: TaskStatus) -> None:
        self._event("lost", island=slot.index, attempt=slot.attempt, state=status.state.name,
                    reason=status.reason.name, message=status.message[:500])
        if status.state == TaskState.FAILED and status.source == Source.EXECUTOR:
            # The island program itself failed (a fitness error, a bad payload): deterministic,
            # relaunching would fail the same way.
            self._fail(GeneticError(f"island {slot.index} failed on its executor: "
                                    f"{status.message}"))
            return
        if self.stopped_by is not None and slot.state is not None:
            _, header, arrays = decode(slot.state)
            slot.final, slot.phase = unpack_state(header, arrays), "done"
            self._maybe_done()
            return
        if slot.attempt >= MAX_RELAUNCHES:
            self._fail(GeneticError(f"island {slot.index} was lost {slot.attempt + 1} times; "
                                    f"last: {status.state.name} {status.message}"))
            return
        self.by_task.pop(slot.task_id, None)
        # what the lost attempt reported past its last state, the relaunch reports again
        self.history.truncate(slot.index, slot.state_generation if slot.state else 0)
        slot.attempt += 1
        slot.phase, slot.task_id, slot.agent_id, slot.pid = "pending", "", "", None
        self._new_tasks()
        self._event("relaunch", island=slot.index, attempt=slot.attempt,
                    generation=slot.state_generation if slot.state else 0)
        driver.revive_offers()
        self.suppressed = False

    def _maybe_done(self) -> None:
        if all(s.phase == "done" for s in self.slots):
            self.done.set()

    # -- messages -----------------------------------------------------------------------------

    def _decode(self, driver: SchedulerDriver, data: bytes
                ) -> tuple[str, dict[str, Any], dict[str, Any]]:
        kind, header, arrays = decode(data)
        if kind == "file":
            data = substrate.read_agent_file(str(header["address"]), driver.framework_id,
                                             str(header["path"]))
            kind, header, arrays = decode(data)
        return kind, header, arrays

    def framework_message(self, driver: SchedulerDriver, agent_id: str, executor_id: str,
                          data: bytes) -> None:
        with self.lock:
            slot = self.by_task.get(executor_id)
            if slot is None or slot.task_id != executor_id or slot.phase == "done" \
                    or self.done.is_set():
                return                           # a stale attempt, or the run is over
            try:
                kind, header, arrays = self._decode(driver, data)
                if kind == "stats":
                    header["columns"] = arrays
                    self._stats(driver, slot, header)
                elif kind == "emigrants":
                    self._emigrants(driver, slot, int(header["epoch"]),
                                    unpack_population(arrays))
                elif kind == "state":
                    self._state(slot, header, arrays)
                elif kind == "want":
                    self._want(driver, slot, int(header["epoch"]))
            except Exception as exc:  # noqa: BLE001 - a bad frame fails the run, not the driver
                self._fail(GeneticError(f"bad message from island {slot.index}: {exc!r}"))

    def _want(self, driver: SchedulerDriver, slot: _Slot, epoch: int) -> None:
        """An island still waits for its immigrants of ``epoch``: send them again, or, when
        the epoch cannot be routed yet because an emigrants frame was lost (messages are best
        effort: a broken scheduler stream drops them), ask the missing islands to resend."""
        frame = self.delivered[slot.index].get(epoch)
        if frame is not None:
            self._send(driver, slot, frame)
        elif epoch not in self.routed:
            have = self.pending_mig.get(epoch, {})
            for other in self.slots:
                if other.index not in have:
                    self._send(driver, other, encode("resend", {"epoch": epoch}))

    def reregistered(self, driver: SchedulerDriver, master_id: str) -> None:
        """Back after a broken stream: what was sent meanwhile was dropped, so tell the
        islands again where their peers are and, if the run was stopped, to stop."""
        with self.lock:
            if not self.plan.synchronous:
                self._send_peers(driver)
            if self.stopped_by is not None:
                for slot in self.slots:
                    self._send(driver, slot, encode("stop"))

    def _send_peers(self, driver: SchedulerDriver) -> None:
        peers = encode("peers", {"addresses": {
            str(s.index): s.address for s in self.slots if s.phase == "running" and s.address}})
        for s in self.slots:
            self._send(driver, s, peers)

    def _stats(self, driver: SchedulerDriver, slot: _Slot, header: dict[str, Any]) -> None:
        self.history.add(slot.index, header["columns"], limit=self.plan.generations)
        slot.generation = int(header["generation"])
        slot.evaluations = int(header["evaluations"])
        slot.best_w = float(header["best_w"])
        if not self.first_seen:
            self.first_seen = True
            self._event("first_generation", island=slot.index)
        if self.best is None or slot.best_w > self.best:
            self.best, self.best_generation = slot.best_w, slot.generation
        top = max(s.generation for s in self.slots)
        self.since_improvement = max(0, top - self.best_generation)
        r = self.rules
        if r.w_target is not None and self.best is not None and self.best >= r.w_target:
            self.request_stop(driver, "target")
        elif r.stagnation is not None and self.since_improvement >= r.stagnation:
            self.request_stop(driver, "stagnation")
        elif r.max_evaluations is not None and \
                sum(s.evaluations for s in self.slots) >= r.max_evaluations:
            self.request_stop(driver, "evaluations")
        self._progress()
        publish_status(self, driver)

    def _progress(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self)

    def _emigrants(self, driver: SchedulerDriver, slot: _Slot, epoch: int,
                   pop: Population | None) -> None:
        if pop is None:
            raise GeneticError("an emigrants frame without a population")
        n = len(self.slots)
        if not self.plan.synchronous:
            for t in migration_targets(self.run.topology, slot.index, n, self.run.rng):
                self._send(driver, self.slots[t],
                           encode("immigrants", {"epoch": epoch}, pack_population(pop)))
            return
        if epoch in self.routed:
            return                     # a relaunched island replaying an epoch already routed
        parts = self.pending_mig.setdefault(epoch, {})
        parts[slot.index] = pop
        if len(parts) < n:
            return
        del self.pending_mig[epoch]
        self.routed.add(epoch)
        incoming: list[list[Population]] = [[] for _ in range(n)]
        for i in range(n):
            for t in migration_targets(self.run.topology, i, n, self.run.rng):
                incoming[t].append(parts[i])
        for t, target in enumerate(self.slots):
            got = Population.concat(incoming[t]) if incoming[t] else pop.take(np.arange(0))
            frame = encode("immigrants", {"epoch": epoch}, pack_population(got))
            if len(frame) > PAYLOAD_LIMIT:
                raise GeneticError(f"{got.n} migrants make a {len(frame)}-byte message; "
                                   f"lower migrants=")
            self.delivered[t][epoch] = frame
            self._send(driver, target, frame)

    def _state(self, slot: _Slot, header: dict[str, Any], arrays: dict[str, Any]) -> None:
        g = int(header["generation"])
        self.history.add(slot.index, _rows(arrays), limit=self.plan.generations)
        arrays = {k: v for k, v in arrays.items() if not k.startswith("rows.")}
        slot.state = encode("state", header, arrays)
        slot.state_generation = g
        for epoch in [e for e in self.delivered[slot.index] if e <= g]:
            del self.delivered[slot.index][epoch]
        if self.checkpoint is None:
            return
        state = unpack_state(header, arrays)
        if self.plan.synchronous:
            cut = self.cuts.setdefault(g, {})
            cut[slot.index] = state
            if len(cut) == len(self.slots):
                for old in [k for k in self.cuts if k <= g]:
                    del self.cuts[old]
                self.write_checkpoint([cut[i] for i in range(len(self.slots))], g)
        elif all(s.state is not None for s in self.slots):
            states = []
            for s in self.slots:
                _, h, a = decode(s.state)  # type: ignore[arg-type]
                states.append(unpack_state(h, a))
            self.write_checkpoint(states, min(s.state_generation for s in self.slots))

    def write_checkpoint(self, states: list[dict[str, Any]], generation: int) -> None:
        """The run checkpoint (the format ``resume=`` reads) at ``generation``."""
        run = self.run
        g = run.problem.genome
        history = self.history.rows(upto=generation)
        meta = {"problem": _jsonable(run.problem.signature()),
                "engine_rng": run.rng.bit_generator.state, "history": history,
                "generation": generation, "best": self.best,
                "since_improvement": self.since_improvement,
                "elapsed": run.elapsed + time.perf_counter() - self.t0}
        write_checkpoint(self.checkpoint, states, meta, g.dtype, g.width,  # type: ignore[arg-type]
                         run.problem.objectives)
        self._event("checkpoint", generation=generation)

    # -- stopping -----------------------------------------------------------------------------

    def request_stop(self, driver: SchedulerDriver, reason: str) -> None:
        """Ask every island to finish at its next generation (thread-safe)."""
        with self.lock:
            if self.stopped_by is not None:
                return
            self.stopped_by = reason
            self._event("stop", reason=reason)
            for slot in self.slots:
                if slot.phase == "pending" and slot.state is not None:
                    _, h, a = decode(slot.state)     # waiting for a relaunch: its last state
                    slot.final = unpack_state(h, a)  # is its final one
                    slot.phase = "done"
                # (a pending island without a state still starts, and stops at once when its
                # RUNNING status arrives)
                self._send(driver, slot, encode("stop"))
            self._maybe_done()

    def error(self, driver: SchedulerDriver, message: str) -> None:
        self._event("master_error", message=message)

    def executor_lost(self, driver: SchedulerDriver, agent_id: str, executor_id: str,
                      status: int) -> None:
        with self.lock:
            self._event("executor_lost", executor=executor_id, status=status)


# ---------------------------------------------------------------------------------------------


class Progress:
    """Feeds the scheduler's statistics to a :mod:`genetic.progress` display: a chart point
    per generation once every island has reported it (islands run at their own pace), and
    the status line from the slots."""

    def __init__(self, display: Any) -> None:
        self.display = display
        self.next = 1

    def __call__(self, sched: GeneticScheduler, force: bool = False) -> None:
        if self.display is None:
            return
        slots = sched.slots
        done = min(s.generation for s in slots)
        if done < self.next:
            return
        maximize = bool(sched.run.problem.maximize[0])
        gens, best, mean, count = sched.history.per_generation(
            maximize, np.arange(self.next, done + 1))
        evals = sum(s.evaluations for s in slots)
        running = sum(s.phase == "running" for s in slots)
        for g, b, m in zip(gens[count > 0].tolist(), best[count > 0].tolist(),
                           mean[count > 0].tolist()):
            self.display.update(generation=g, best=b, mean=m, evaluations=evals,
                                running=running, islands=len(slots),
                                force=force and g == done)
        self.next = done + 1

    def close(self, sched: GeneticScheduler, outcome: str) -> None:
        if self.display is not None:
            self(sched, force=True)
            self.display.close(outcome)


def _rows(arrays: dict[str, Any]) -> dict[str, Any]:
    """The statistics rows a state frame carries (its ``rows.*`` arrays)."""
    return {k[5:]: v for k, v in arrays.items() if k.startswith("rows.")}


def _local_slots(master: str) -> int | None:
    m = _LOCAL.match(master)
    if m is None:
        return None
    return int(m.group(1)) if m.group(1) else (os.cpu_count() or 1)


def run_distributed(run: Any, master: str, *, generations: int, synchronous: bool,
                    checkpoint_every: int | None, checkpoint: str | None,
                    max_evaluations: int | None, max_seconds: float | None,
                    target: float | None, stagnation: int | None, seed: int | None,
                    island_cpus: float | None = None, island_mem: float = 128.0,
                    progress: bool | None = None, t0: float | None = None,
                    cluster_options: dict[str, Any] | None = None) -> Any:
    """Run the islands of ``run`` (a prepared :class:`genetic.engine._Run`) on the substrate.

    Returns the :class:`~genetic.Result`, with ``events`` recording launches, relaunches,
    checkpoints, the first generation and the stop.
    """
    t0 = time.perf_counter() if t0 is None else t0
    n = len(run.settings)
    slots = _local_slots(master)
    if slots is not None and slots < 1:
        raise ConfigError("local[N] needs N >= 1")
    # Rounded down so that N / islands shares always fit in N cpus despite float error.
    share = island_cpus if island_cpus is not None else (
        min(1.0, int(slots / n * 1000) / 1000) if slots is not None else 1.0)
    if share <= EXECUTOR_CPUS:
        raise ConfigError(f"island_cpus must exceed {EXECUTOR_CPUS}, got {share}")
    task_resources = Resources(cpus=round(share - EXECUTOR_CPUS, 6), mem=float(island_mem))
    plan = Plan(generations=generations, migration_interval=run.interval,
                migrants=run.migrants, checkpoint_every=checkpoint_every,
                synchronous=synchronous, islands=n, report_generations=REPORT_GENERATIONS,
                w_target=None if target is None else float(run.problem.weights[0]) * target)
    w = float(run.problem.weights[0])
    rules = _Rules(max_evaluations, max_seconds, None if target is None else w * target,
                   stagnation)
    show = Progress(resolve_progress(progress, generations,
                                     maximize=bool(run.problem.maximize[0])))
    sched = GeneticScheduler(run, plan, rules, task_resources,
                             checkpoint=None if checkpoint is None else os.fspath(checkpoint),
                             on_progress=show, t0=t0)
    cluster = None
    driver = None
    try:
        if slots is not None:
            options = dict(cluster_options or {})
            options.setdefault("cpus", float(slots))
            cluster = substrate.LocalCluster(agents=1, **options).start()   # with its dashboard
            address = cluster.master
            sched._event("cluster_started")
        else:
            address = master
        driver = SchedulerDriver(sched, FrameworkInfo(name=f"genetic: {run.problem!r}"[:200],
                                                      failover_timeout=FAILOVER_TIMEOUT),
                                 address)
        driver.start()
        try:
            driver.wait_registered(timeout=REGISTER_TIMEOUT)
        except substrate.SubstrateError as exc:
            raise GeneticError(f"could not register with the master at {address}: {exc}") \
                from exc
        sched.dashboard_url = (getattr(cluster, "dashboard_url", "")
                               or getattr(driver, "dashboard_url", "") or None)
        deadline = None if max_seconds is None else time.perf_counter() + \
            max(0.0, max_seconds - run.elapsed)
        while not sched.done.wait(0.05 if deadline is not None else 0.25):
            if not driver.running:
                raise GeneticError(f"the scheduler driver stopped (master {address} gone?)")
            if deadline is not None and time.perf_counter() >= deadline:
                sched.request_stop(driver, "seconds")
                deadline = None
    finally:
        show.close(sched, "failed" if sched.failure is not None or not sched.done.is_set()
                   else sched.stopped_by or "generations")
        if driver is not None:
            driver.stop()
        if cluster is not None:
            cluster.stop()
    if sched.failure is not None:
        raise sched.failure
    return _finish(run, sched, checkpoint, seed, t0)


def _finish(run: Any, sched: GeneticScheduler, checkpoint: Any, seed: int | None,
            t0: float) -> Any:
    islands = [Island.from_state(run.problem, run.settings[s.index], s.final)
               for s in sched.slots]  # type: ignore[arg-type]
    run.islands = islands
    run.history = sched.history
    run.generation = max(isl.generation for isl in islands)
    run.best = sched.best
    run.since_improvement = sched.since_improvement
    run.elapsed += time.perf_counter() - t0
    if checkpoint is not None:
        run.save(checkpoint)
    result = run._result(sched.stopped_by or "generations", seed)
    result.events = sched.events
    result.dashboard_url = getattr(sched, "dashboard_url", None)
    return result
