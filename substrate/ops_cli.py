"""Command-line pieces for operating a cluster: agent recovery flags, master quota, drains.

``substrate.cli`` registers these; this module parses and converts them, and runs
``offerpool drain``. It also turns :class:`~substrate.agent.AgentConfig` overrides and a
:class:`~substrate.master.MasterConfig` quota back into flags, for
:class:`~substrate.LocalCluster` in process mode.

Examples
--------
>>> role, limit = parse_quota("analytics:cpus=4,mem=2048")
>>> role, str(limit)
('analytics', 'Resources(cpus=4, mem=2048)')
>>> quota_flags({"dev": parse_quota("dev:cpus=2")[1]})
['--quota', 'dev:cpus=2.0,mem=0.0,disk=0.0,gpus=0.0']
"""
from __future__ import annotations

import argparse
import math
import sys
from typing import Any, Mapping

from substrate.resources import Resources

#: AgentConfig field -> agent flag, for the overrides that have one.
AGENT_FLAGS = {
    "recover": "--recover",
    "boot_id_file": "--boot-id-file",
    "executor_recovery_timeout": "--executor-recovery-timeout",
    "executor_shutdown_grace": "--executor-shutdown-grace",
    "executor_registration_timeout": "--executor-registration-timeout",
    "status_update_retry_initial": "--status-update-retry",
    "executor_message_rate": "--executor-message-rate",
    "executor_update_rate": "--executor-update-rate",
    "isolation": "--isolation",
    "container_pids_max": "--pids-limit",
    "cgroup_root": "--cgroup-root",
    "allow_root_tasks": "--allow-root-tasks",
}
_SCALARS = ("cpus", "mem", "disk", "gpus")


def _seconds(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite non-negative number: {text}")
    return value


def _yes_no(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"must be true or false: {text}")


def parse_quota(text: str) -> tuple[str, Resources]:
    """``ROLE:cpus=N,mem=MiB,disk=MiB,gpus=N`` -> ``(role, Resources)``."""
    role, sep, spec = text.partition(":")
    if not sep or not role:
        raise argparse.ArgumentTypeError(f"quota must be ROLE:cpus=N,mem=MiB,...: {text!r}")
    values: dict[str, float] = {}
    for part in filter(None, spec.split(",")):
        name, eq, number = part.partition("=")
        if not eq or name not in _SCALARS:
            raise argparse.ArgumentTypeError(
                f"quota entries are {', '.join(_SCALARS)}=NUMBER, got {part!r}")
        values[name] = _seconds(number)
    if not values:
        raise argparse.ArgumentTypeError(f"quota for {role!r} limits nothing")
    return role, Resources(**values)


def quota_flags(quota: Mapping[str, Resources]) -> list[str]:
    """The ``--quota`` flags that give a master ``quota``."""
    flags: list[str] = []
    for role, limit in quota.items():
        flags += ["--quota", f"{role}:" + ",".join(f"{k}={float(getattr(limit, k))}"
                                                   for k in _SCALARS)]
    return flags


def agent_flags(options: Mapping[str, Any]) -> list[str]:
    """The agent flags for AgentConfig ``options``; unknown keys raise ValueError."""
    flags: list[str] = []
    for key, value in options.items():
        if key not in AGENT_FLAGS:
            raise ValueError(f"agent option {key!r} has no command-line flag")
        flags += [AGENT_FLAGS[key], str(value)]
    return flags


def add_agent_arguments(parser: argparse.ArgumentParser) -> None:
    """Recovery, kill and rate-limit flags of ``offerpool agent``."""
    parser.add_argument("--recover", choices=("reconnect", "cleanup"), default="reconnect",
                        help="what to do with executors a previous run left running")
    parser.add_argument("--boot-id-file", default="/proc/sys/kernel/random/boot_id",
                        help="where the host's boot id is read (a change means a reboot)")
    parser.add_argument("--executor-recovery-timeout", type=_seconds, default=900.0,
                        help="seconds executors wait for a dead agent to come back")
    parser.add_argument("--executor-shutdown-grace", type=_seconds, default=5.0,
                        help="seconds between asking a task or executor to stop and SIGKILL")
    parser.add_argument("--executor-registration-timeout", type=_seconds, default=60.0)
    parser.add_argument("--status-update-retry", type=_seconds, default=10.0,
                        help="first retry interval of an unacknowledged status update")
    parser.add_argument("--executor-message-rate", type=_seconds, default=2000.0,
                        help="messages per second one executor may send")
    parser.add_argument("--executor-update-rate", type=_seconds, default=20000.0,
                        help="status updates per second one executor may send")
    parser.add_argument("--cgroup-root", default="",
                        help="with --isolation cgroups-v2: the cgroup2 mount point to use")
    parser.add_argument("--allow-root-tasks", type=_yes_no, nargs="?", const=True,
                        default=False, metavar="true|false",
                        help="let frameworks that name the user root run tasks as root")


def agent_options(args: argparse.Namespace) -> dict:
    """AgentConfig fields from the flags of :func:`add_agent_arguments`."""
    return {field: getattr(args, flag[2:].replace("-", "_"))
            for field, flag in AGENT_FLAGS.items()}


def add_drain_command(sub) -> None:
    """``offerpool drain``."""
    d = sub.add_parser("drain", help="drain an agent: no new offers, its tasks killed")
    d.add_argument("agent_id")
    d.add_argument("--master", default="127.0.0.1:5050")
    d.add_argument("--grace", type=_seconds, help="seconds each task has to stop "
                                                  "(default: the agent's shutdown grace)")
    d.add_argument("--reactivate", action="store_true", help="end the drain instead")


def run_drain(args: argparse.Namespace) -> int:
    import grpc

    from substrate.v1 import pb, rpc

    request = pb.DrainAgentRequest(agent_id=args.agent_id, reactivate=args.reactivate)
    if args.grace is not None:
        request.grace_period_seconds = args.grace
    try:
        with grpc.insecure_channel(args.master) as channel:
            reply = rpc.MasterStub(channel).DrainAgent(request, timeout=10)
    except grpc.RpcError as exc:
        print(f"offerpool drain: {exc.details() or exc.code().name}", file=sys.stderr)
        return 1
    if args.reactivate:
        print(f"agent {reply.agent_id} is offered again")
    else:
        print(f"agent {reply.agent_id} draining; {reply.tasks_killed} tasks told to stop")
    return 0
