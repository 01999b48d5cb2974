"""A framework process for the many-hosts tests, run inside its own network namespace.

It registers with ``--master``, reads JSON commands on stdin and writes JSON events on stdout:

* in: ``{"op": "submit", "id": ..., "cmd": ..., "agent": AGENT_ID}`` (a shell command task pinned
  to one agent), ``{"op": "stop"}``;
* out: ``{"ev": "registered"}``, ``{"ev": "status", "task": ..., "state": ..., "reason": ...,
  "agent": ...}``, ``{"ev": "agent_lost", "agent": ...}``, ``{"ev": "error", ...}``.
"""
import argparse
import json
import sys
import threading

from substrate import (
    CommandInfo, Filters, FrameworkInfo, Resources, Scheduler, SchedulerDriver, TaskInfo,
)

OUT = threading.Lock()


def emit(**event) -> None:
    with OUT:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()


class PinnedScheduler(Scheduler):
    """Launches each queued command on the agent it names, as soon as that agent is offered."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.queue: list = []

    def registered(self, driver, framework_id, master_id):
        emit(ev="registered", framework_id=framework_id)

    def resource_offers(self, driver, offers):
        with self.lock:
            for offer in offers:
                free, batch = offer.resources, []
                for spec in list(self.queue):
                    need = Resources(cpus=0.1, mem=32)
                    if spec["agent"] == offer.agent_id and free.contains(need):
                        free = free - need
                        self.queue.remove(spec)
                        batch.append(TaskInfo(task_id=spec["id"], agent_id=offer.agent_id,
                                              name=spec["id"], resources=need,
                                              command=CommandInfo(spec["cmd"], shell=True)))
                refuse = 0.2 if self.queue else 60.0
                if batch:
                    driver.launch_tasks(offer.id, batch, Filters(refuse_seconds=refuse))
                else:
                    driver.decline_offer(offer.id, Filters(refuse_seconds=refuse))

    def status_update(self, driver, status):
        emit(ev="status", task=status.task_id, state=status.state.name,
             reason=status.reason.name, agent=status.agent_id)

    def agent_lost(self, driver, agent_id):
        emit(ev="agent_lost", agent=agent_id)

    def error(self, driver, message):
        emit(ev="error", message=message)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--master", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--partition-aware", action="store_true")
    args = parser.parse_args()
    sched = PinnedScheduler()
    caps = ["PARTITION_AWARE"] if args.partition_aware else []
    driver = SchedulerDriver(sched, FrameworkInfo(name=args.name, capabilities=caps),
                             args.master)
    driver.start()
    for line in sys.stdin:
        command = json.loads(line)
        if command["op"] == "stop":
            break
        with sched.lock:
            sched.queue.append(command)
        driver.revive_offers()
    driver.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
