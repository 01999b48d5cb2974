"""The island executor: ``python -m genetic.executor``, started by a substrate agent.

One executor hosts one island task for the whole run. The task's payload (see
:func:`genetic.protocol.unpack_spec`) carries the problem, the island's settings, its seed or
the state to continue from, and the run's epoch plan. A worker thread then evolves the island
with :meth:`genetic.island.Island.advance` (the same generation as ``master="inline"``) and
talks to the scheduler in frames of :mod:`genetic.protocol`:

- ``stats`` after the first generation, then every ``report_seconds`` (or every
  ``report_generations``, and at the end): the statistics rows since the last report as
  column arrays (:func:`genetic.history.pack_rows`), not one JSON object per row, so neither
  the island nor the scheduler's process spends time per row;
- ``emigrants`` every ``migration_interval`` generations in synchronous mode, after which the
  island waits for the ``immigrants`` frame of the same epoch (asking again with ``want`` if
  it is slow to come; messages are best effort, so a scheduler that never got some
  island's emigrants answers ``want`` with a ``resend`` to that island). In asynchronous
  mode migrants do not go through the scheduler at all: each island writes its latest
  emigrants (:func:`genetic.protocol.pack_migrants`) into a file in the framework directory
  on its agent and, every epoch, reads its sources' files
  (through a shared mapping on the same agent, with :func:`substrate.read_agent_file` from
  another one), importing each source's emigrants once. The scheduler only tells the islands
  where their peers are (a ``peers`` frame);
- ``state`` every ``checkpoint_every`` generations (what a relaunch continues from), with the
  rows not reported yet;
- its final state in the FINISHED status' data, with every statistics row of the attempt.

A ``stop`` frame ends the island at its next generation. Everything about coordination —
routing, stopping rules, relaunching lost islands — is the scheduler's (:mod:`genetic.framework`).
"""
from __future__ import annotations

import json
import mmap
import os
import queue
import sys
import threading
import time
import traceback
import uuid
from typing import Any

import numpy as np

import substrate
from substrate import Executor, ExecutorDriver, TaskInfo, TaskState

from .island import Island
from .population import Population
from .history import pack_rows
from .protocol import (
    PAYLOAD_LIMIT,
    decode,
    encode,
    migrants_epoch,
    migrants_layout,
    migrants_size,
    pack_migrants,
    pack_population,
    pack_state,
    unpack_migrants,
    unpack_population,
    unpack_spec,
    unpack_state,
)

#: How long a synchronous island waits for its immigrants before asking again.
WANT_AFTER = 2.0


def _framed_or_file(driver: ExecutorDriver, frame: bytes) -> bytes:
    """``frame`` itself, or when it is too big a ``file`` frame naming where it was written."""
    if len(frame) <= PAYLOAD_LIMIT:
        return frame
    rel = os.path.join("genetic", f"{driver.executor_id}-{uuid.uuid4().hex[:8]}.frame")
    path = os.path.join(driver.framework_dir, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(frame)
    return encode("file", {"address": driver.agent_address, "path": rel})


class IslandRunner:
    """Evolves one island in a thread and exchanges frames with the scheduler."""

    def __init__(self, driver: Any, task_id: str, spec: dict[str, Any]) -> None:
        self.driver = driver
        self.task_id = task_id
        self.spec = spec
        self.inbox: queue.SimpleQueue[tuple[int, Population]] = queue.SimpleQueue()
        self.stop = threading.Event()
        self.early: dict[int, Population] = {}
        self.peers: dict[int, str] = {}         # island -> its agent's address (async mode)
        self.seen: dict[int, int] = {}          # island -> last epoch of its emigrants taken
        self.out: mmap.mmap | None = None    # this island's migrants file, mapped (async mode)
        self.views: dict[int, tuple[str, mmap.mmap]] = {}   # sources on this agent, mapped
        self.local_address = getattr(driver, "agent_address", None)
        self.layout: Any = None
        self.batches: list[dict[str, Any]] = []
        # synchronous mode: the emigrants frame of the epoch this island waits on, resent
        # when the scheduler says it never arrived
        self.emigrants: tuple[int, bytes] | None = None

    # -- messages from the scheduler (callback thread) ---------------------------------------

    def deliver(self, kind: str, header: dict[str, Any], arrays: dict[str, Any]) -> None:
        if kind == "immigrants":
            pop = unpack_population(arrays)
            self.inbox.put((int(header["epoch"]), pop))
        elif kind == "peers":
            self.peers = {int(k): str(v) for k, v in header["addresses"].items()}
        elif kind == "stop":
            self.stop.set()
            self.inbox.put((-1, None))  # type: ignore[arg-type]
        elif kind == "resend":
            sent = self.emigrants
            if sent is not None and sent[0] == int(header["epoch"]):
                self.send(sent[1])

    # -- the loop (worker thread) -------------------------------------------------------------

    def send(self, frame: bytes) -> None:
        self.driver.send_framework_message(_framed_or_file(self.driver, frame))

    def run(self) -> None:
        spec = self.spec
        plan = spec["plan"]
        problem, settings, index = spec["problem"], spec["settings"], spec["island"]
        state = None
        if spec.get("state") is not None:
            _, header, arrays = decode(spec["state"])
            state = unpack_state(header, arrays)
        start = int(state["meta"]["generation"]) if state is not None else 0
        # RUNNING first (with the pid) so that the scheduler knows the process even if
        # building the island fails.
        self.driver.update(self.task_id, TaskState.RUNNING, data=json.dumps(
            {"pid": os.getpid(), "generation": start,
             "address": getattr(self.driver, "agent_address", "")}).encode())
        if state is not None:
            island = Island.from_state(problem, settings, state)
        else:
            island = Island(problem, settings, index, spec["seed"])
        generations, interval = plan["generations"], plan["migration_interval"]
        ckpt, migrants = plan["checkpoint_every"], plan["migrants"]
        exchange = plan["islands"] > 1 and migrants > 0
        synchronous, topology = plan["synchronous"], spec.get("topology", "ring")
        w_target = plan["w_target"]
        report_seconds = plan["report_seconds"]
        report_rows = int(plan.get("report_generations") or 0) or generations + 1
        pending: list[tuple] = []           # statistics rows not sent yet
        self.batches = []                   # every row of this attempt, packed
        cpu0 = time.process_time()
        last_report = time.monotonic()
        advance, monotonic = island.advance, time.monotonic
        try:
            while island.generation < generations and not self.stop.is_set():
                pending.append(advance())
                g = island.generation
                if exchange and g % interval == 0:
                    if synchronous:
                        frame = encode("emigrants", {"island": index, "epoch": g},
                                       pack_population(island.export_migrants(migrants)))
                        self.emigrants = (g, frame)
                        self.send(frame)
                        self._immigrate(island, g, True)
                    else:
                        self._exchange_files(island, g, migrants, plan["islands"], topology)
                reached = w_target is not None and island.best_w >= w_target
                if reached:      # stop at once; the scheduler then stops the other islands
                    self.stop.set()
                if g == 1 or g == generations or reached or len(pending) >= report_rows or \
                        monotonic() - last_report >= report_seconds:
                    self._report(island, pending)
                    pending, last_report = [], monotonic()
                if ckpt and g % ckpt == 0 and g < generations:
                    # The rows not reported yet go with the state: a relaunch replays only
                    # what comes after it.
                    header, arrays = pack_state(island.state())
                    arrays.update({"rows." + k: v for k, v in self._pack(pending).items()})
                    self.send(encode("state", dict(header, island=index, generation=g), arrays))
                    pending = []
            if pending:
                self._report(island, pending)
        finally:
            for mm in [self.out] + [v for _, v in self.views.values()]:
                if mm is not None:
                    mm.close()
            self.out, self.views = None, {}
        header, arrays = pack_state(island.state())
        # The final status also carries every statistics row of this attempt: messages are
        # best effort and may arrive after the status, which is delivered reliably.
        every = {k: np.concatenate([b[k] for b in self.batches]) for k in self.batches[0]} \
            if self.batches else pack_rows([])
        arrays.update({"rows." + k: v for k, v in every.items()})
        final = encode("state", dict(header, island=index, generation=island.generation,
                                     cpu=time.process_time() - cpu0), arrays)
        self.driver.update(self.task_id, TaskState.FINISHED,
                           data=_framed_or_file(self.driver, final))

    def _pack(self, rows: list[tuple]) -> dict[str, Any]:
        cols = pack_rows(rows)
        self.batches.append(cols)
        return cols

    def _report(self, island: Island, rows: list[tuple]) -> None:
        """One ``stats`` frame: the rows since the last one, as column arrays."""
        self.send(encode("stats", {"island": island.index, "generation": island.generation,
                                   "best_w": island.best_w, "evaluations": island.evaluations},
                         self._pack(rows)))

    # -- asynchronous migration through files ------------------------------------------------

    @staticmethod
    def _migrants_path(index: int) -> str:
        return os.path.join("genetic", "migrants", f"island-{index}.frame")

    def _exchange_files(self, island: Island, epoch: int, migrants: int, n: int,
                        topology: str) -> None:
        blob = pack_migrants(epoch, island.export_migrants(migrants))
        if self.out is None or len(blob) > len(self.out):
            self.out = self._map_own(island.index, len(blob))
        # Written in place into a shared mapping of the file: no system call per epoch (each
        # one, with the kernel's mitigations on this kind of VM, also slowed the island's next
        # generations), and no rename or truncation, which on ext4 forces the data to disk
        # (~1.5 ms an epoch). A reader may see a half-written file: the CRC tells it to skip
        # that epoch.
        self.out[:len(blob)] = blob
        parts = []
        for src in self._sources(island.index, n, topology):
            if self.layout is None:
                self.layout = migrants_layout(island.pop)
            pop = self._read_migrants(src, self.layout)
            if pop is not None and pop.n:
                parts.append(pop)
        if parts:
            island.import_migrants(parts[0] if len(parts) == 1 else Population.concat(parts))

    def _map_own(self, index: int, size: int) -> mmap.mmap:
        if self.out is not None:
            self.out.close()
        path = os.path.join(self.driver.framework_dir, self._migrants_path(index))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            size = max(os.fstat(fd).st_size, -(-size // mmap.PAGESIZE) * mmap.PAGESIZE)
            os.ftruncate(fd, size)      # (only ever grows: a shrink would force a flush)
            return mmap.mmap(fd, size)
        finally:
            os.close(fd)

    def _local_view(self, src: int, address: str) -> mmap.mmap | None:
        view = self.views.get(src)
        if view is not None and view[0] == address:
            return view[1]
        try:
            fd = os.open(os.path.join(self.driver.framework_dir, self._migrants_path(src)),
                         os.O_RDONLY)
        except OSError:
            return None                 # nothing written yet
        try:
            size = os.fstat(fd).st_size
            if size == 0:
                return None
            mm = mmap.mmap(fd, size, access=mmap.ACCESS_READ)
        finally:
            os.close(fd)
        if view is not None:
            view[1].close()
        self.views[src] = (address, mm)
        return mm

    def _sources(self, index: int, n: int, topology: str) -> list[int]:
        """The islands this one takes migrants from (the reverse of the scheduler's targets;
        ``random`` picks one other island per epoch from a generator of its own, so that the
        island's evolution stream is not touched)."""
        if topology == "ring":
            return [(index - 1) % n]
        if topology == "complete":
            return [j for j in range(n) if j != index]
        if not hasattr(self, "_pick"):
            import numpy as np
            self._pick = np.random.default_rng([index, os.getpid()])
        j = int(self._pick.integers(0, n - 1))
        return [j + 1 if j >= index else j]

    def _read_migrants(self, src: int, like: Any) -> Population | None:
        address = self.peers.get(src)
        if not address:
            return None                   # not running (yet, or being relaunched)
        if address == self.local_address:
            mm = self._local_view(src, address)
            if mm is None:
                return None
            epoch = migrants_epoch(mm[:64])
            if epoch is None or epoch <= self.seen.get(src, -1):
                return None               # already taken: a slower source has no new epoch
            pop = unpack_migrants(mm[:], like)
            if pop is None and len(mm) < migrants_size(mm[:64], like):
                self.views.pop(src)[1].close()    # the file grew: map it again next epoch
        else:
            try:
                data = substrate.read_agent_file(address, self.driver.framework_id,
                                                 self._migrants_path(src), timeout=10.0)
            except substrate.SubstrateError:
                return None               # nothing written yet, or its agent is gone
            epoch = migrants_epoch(data)
            if epoch is None or epoch <= self.seen.get(src, -1):
                return None
            pop = unpack_migrants(data, like)
        if pop is None:
            return None                   # caught mid-write: next epoch
        self.seen[src] = epoch
        return pop

    def _immigrate(self, island: Island, epoch: int, synchronous: bool) -> None:
        # synchronous mode: this epoch's immigrants, routed by the scheduler
        pop = self.early.pop(epoch, None)
        while pop is None and not self.stop.is_set():
            try:
                e, got = self.inbox.get(timeout=WANT_AFTER)
            except queue.Empty:
                self.send(encode("want", {"island": island.index, "epoch": epoch}))
                continue
            if e == epoch:
                pop = got
            elif e > epoch:
                self.early[e] = got
        if pop is not None and pop.n:
            island.import_migrants(pop)


class IslandExecutor(Executor):
    """Hosts the island task of this executor (one per process)."""

    def __init__(self) -> None:
        self.runner: IslandRunner | None = None

    def launch_task(self, driver: ExecutorDriver, task: TaskInfo) -> None:
        spec = unpack_spec(task.data)
        runner = self.runner = IslandRunner(driver, task.task_id, spec)

        def main() -> None:
            try:
                runner.run()
            except Exception:  # noqa: BLE001 - any island failure is reported as FAILED
                text = traceback.format_exc()
                try:
                    driver.update(task.task_id, TaskState.FAILED,
                                  f"island {spec.get('island')} raised:\n{text}"[-8000:])
                except substrate.SubstrateError:
                    pass

        threading.Thread(target=main, daemon=True, name="island").start()

    def framework_message(self, driver: ExecutorDriver, data: bytes) -> None:
        if self.runner is not None:
            kind, header, arrays = decode(data)
            self.runner.deliver(kind, header, arrays)

    def kill_task(self, driver: ExecutorDriver, task_id: str) -> None:
        if self.runner is not None:
            self.runner.stop.set()
        driver.update(task_id, TaskState.KILLED, "killed on request")

    def shutdown(self, driver: ExecutorDriver) -> None:
        if self.runner is not None:
            self.runner.stop.set()


if __name__ == "__main__":
    sys.exit(ExecutorDriver(IslandExecutor()).run())
