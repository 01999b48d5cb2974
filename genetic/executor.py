"""The island executor: ``python -m genetic.executor``, started by a substrate agent.

One executor hosts one island task for the whole run. The task's payload (see
:func:`genetic.protocol.unpack_spec`) carries the problem, the island's settings, its seed or
the state to continue from, and the run's epoch plan. A worker thread then evolves the island
with :meth:`genetic.island.Island.step` (the same loop as ``master="inline"``) and talks to the
scheduler in frames of :mod:`genetic.protocol`:

- ``stats`` after the first generation, then every ``report_seconds`` (and at the end): the
  per-generation statistics rows since the last report (one small frame per epoch at most
  a few times a second, so fast islands do not flood the master);
- ``emigrants`` every ``migration_interval`` generations in synchronous mode, after which the
  island waits for the ``immigrants`` frame of the same epoch (asking again with ``want`` if
  it is slow to come; messages are best effort, so a scheduler that never got some island's
  emigrants answers ``want`` with a ``resend`` to that island). In asynchronous mode migrants do not go through the scheduler at all:
  each island writes its latest emigrants to a file in the framework directory on its agent
  and, every epoch, reads its sources' files (directly on the same agent, with
  :func:`substrate.read_agent_file` from another one), importing each source's emigrants once.
  The scheduler only tells the islands where their peers are (a ``peers`` frame). Relaying
  every migrant through the master and the scheduler cost the driver process about as much
  CPU as a third island at short epochs;
- ``state`` every ``checkpoint_every`` generations (what a relaunch continues from);
- its final state in the FINISHED status' data.

A ``stop`` frame ends the island at its next generation. Everything about coordination —
routing, stopping rules, relaunching lost islands — is the scheduler's (:mod:`genetic.framework`).
"""
from __future__ import annotations

import json
import os
import queue
import struct
import sys
import threading
import time
import traceback
import uuid
import zlib
from typing import Any

import substrate
from substrate import Executor, ExecutorDriver, TaskInfo, TaskState

from .island import Island
from .population import Population
from .protocol import (
    PAYLOAD_LIMIT,
    decode,
    encode,
    pack_population,
    pack_state,
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
        self.wrote = False
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
        rows: list[dict[str, Any]] = []
        every: list[dict[str, Any]] = []   # all rows of this attempt, for the final status
        cpu0 = time.process_time()
        last_report = time.monotonic()
        while island.generation < generations and not self.stop.is_set():
            new = island.step(1)
            rows.extend(new)
            every.extend(new)
            g = island.generation
            epoch = g % interval == 0
            if epoch and exchange and plan["synchronous"]:
                frame = encode("emigrants", {"island": index, "epoch": g},
                               pack_population(island.export_migrants(migrants)))
                self.emigrants = (g, frame)
                self.send(frame)
                self._immigrate(island, g, True)
            elif epoch and exchange:
                self._exchange_files(island, g, migrants, plan, spec.get("topology", "ring"))
            reached = plan["w_target"] is not None and island.best_w >= plan["w_target"]
            if reached:          # stop at once; the scheduler then stops the other islands
                self.stop.set()
            now = time.monotonic()
            if g == 1 or g == generations or reached or \
                    now - last_report >= plan["report_seconds"]:
                self.send(encode("stats", {"island": index, "generation": g, "rows": rows,
                                           "best_w": island.best_w,
                                           "evaluations": island.evaluations}))
                rows, last_report = [], now
            if ckpt and g % ckpt == 0 and g < generations:
                # The rows not reported yet go with the state: a relaunch replays only what
                # comes after it.
                header, arrays = pack_state(island.state())
                self.send(encode("state", dict(header, island=index, generation=g, rows=rows),
                                 arrays))
                rows = []
        if rows:
            self.send(encode("stats", {"island": index, "generation": island.generation,
                                       "rows": rows, "best_w": island.best_w,
                                       "evaluations": island.evaluations}))
        header, arrays = pack_state(island.state())
        # The final status also carries every statistics row of this attempt: messages are
        # best effort and may arrive after the status, which is delivered reliably.
        final = encode("state", dict(header, island=index, generation=island.generation,
                                     rows=every, cpu=time.process_time() - cpu0), arrays)
        self.driver.update(self.task_id, TaskState.FINISHED,
                           data=_framed_or_file(self.driver, final))

    # -- asynchronous migration through files ------------------------------------------------

    @staticmethod
    def _migrants_path(index: int) -> str:
        return os.path.join("genetic", "migrants", f"island-{index}.frame")

    def _exchange_files(self, island: Island, epoch: int, migrants: int,
                        plan: dict[str, Any], topology: str) -> None:
        frame = encode("emigrants", {"island": island.index, "epoch": epoch},
                       pack_population(island.export_migrants(migrants)))
        path = os.path.join(self.driver.framework_dir, self._migrants_path(island.index))
        if not self.wrote:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            self.wrote = True
        # Overwritten in place, not written aside and renamed: on ext4 a rename (or a
        # truncation) over an existing file forces its data to disk, ~1.5 ms an epoch. A
        # reader may then see a half-written file: the length and CRC in front tell it to
        # skip that epoch.
        blob = struct.pack(">QI", len(frame), zlib.crc32(frame)) + frame
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.pwrite(fd, blob, 0)
        finally:
            os.close(fd)
        parts = []
        for src in self._sources(island.index, plan["islands"], topology):
            pop = self._read_migrants(src)
            if pop is not None and pop.n:
                parts.append(pop)
        if parts:
            island.import_migrants(Population.concat(parts))

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

    def _read_migrants(self, src: int) -> Population | None:
        address = self.peers.get(src)
        if not address:
            return None                   # not running (yet, or being relaunched)
        rel = self._migrants_path(src)
        try:
            if address == getattr(self.driver, "agent_address", None):
                with open(os.path.join(self.driver.framework_dir, rel), "rb") as fh:
                    data = fh.read()
            else:
                data = substrate.read_agent_file(address, self.driver.framework_id, rel,
                                                 timeout=10.0)
        except (OSError, substrate.SubstrateError):
            return None                   # nothing written yet, or its agent is gone
        if len(data) < 12:
            return None
        size, crc = struct.unpack(">QI", data[:12])
        data = data[12:12 + size]
        if len(data) != size or zlib.crc32(data) != crc:
            return None                   # caught mid-write: next epoch
        kind, header, arrays = decode(data)
        epoch = int(header.get("epoch", -1))
        if kind != "emigrants" or epoch <= self.seen.get(src, -1):
            return None                   # already taken: a slower source has no new epoch
        self.seen[src] = epoch
        return unpack_population(arrays)

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
