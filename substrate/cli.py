"""The ``offerpool`` command: master, agent, up, status, run and demo.

Argument parsing only; each sub-command calls into the package. ``--ready-json`` (used by
:class:`substrate.LocalCluster` in process mode) prints one JSON line with the bound
addresses once a daemon is serving.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from typing import Optional, Sequence

from substrate import ops_cli
from substrate.security import cli as security_cli


def _positive(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite non-negative number: {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="offerpool", description=(
        "offerpool: a resource-offer cluster manager with dataflow and genetic frameworks"))
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

    m = sub.add_parser("master", help="run a master in the foreground")
    m.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    m.add_argument("--port", type=int, default=5050)
    m.add_argument("--http-port", type=int, default=5051, help="-1 disables /state and /metrics")
    m.add_argument("--agent-heartbeat", type=_positive, default=15.0, help="seconds")
    m.add_argument("--agent-missed-heartbeats", type=int, default=5)
    m.add_argument("--offer-timeout", type=_positive, default=60.0, help="seconds; 0 disables")
    m.add_argument("--quota", type=ops_cli.parse_quota, action="append", default=[],
                   metavar="ROLE:cpus=N,mem=MiB", help="limit a role (repeatable)")
    m.add_argument("--ready-json", action="store_true", help=argparse.SUPPRESS)
    security_cli.add_server_arguments(m)
    from substrate.master.ha import add_arguments as add_ha_arguments
    add_ha_arguments(m)

    a = sub.add_parser("agent", help="run an agent in the foreground")
    a.add_argument("--master", required=True, help="HOST:PORT or zk://HOST:PORT/PATH")
    a.add_argument("--host", default="127.0.0.1")
    a.add_argument("--port", type=int, default=0)
    a.add_argument("--work-dir", help="default: the agent.work_dir setting (~/.offerpool/agent)")
    a.add_argument("--config", help="config file (TOML); see `offerpool config`")
    from substrate.submit.commands import add_agent_flags
    add_agent_flags(a)
    a.add_argument("--cpus", type=_positive)
    a.add_argument("--mem", type=_positive, help="MiB")
    a.add_argument("--disk", type=_positive, help="MiB")
    a.add_argument("--gpus", type=_positive)
    a.add_argument("--ports", default="", help="port ranges, e.g. 31000-32000")
    a.add_argument("--hostname")
    a.add_argument("--isolation", choices=("auto", "cgroups", "cgroups-v2", "cgroups-v1", "posix",
                                           "none"), default="auto",
                   help="how executors are confined (default: cgroups if writable, else posix)")
    a.add_argument("--pids-limit", type=int, default=1024, help="processes per executor")
    ops_cli.add_agent_arguments(a)
    a.add_argument("--ready-json", action="store_true", help=argparse.SUPPRESS)
    security_cli.add_server_arguments(a)

    u = sub.add_parser("up", help="a master and one local agent in the foreground")
    u.add_argument("--port", type=int, default=5050)
    u.add_argument("--http-port", type=int, default=5051)
    u.add_argument("--agents", type=int, default=1)

    s = sub.add_parser("status", help="show a master's agents, frameworks and tasks")
    s.add_argument("--master", default="127.0.0.1:5050", help="HOST:PORT or zk://HOST:PORT/PATH")
    s.add_argument("--json", action="store_true", help="print the raw /state JSON")

    r = sub.add_parser("run", help="run a shell command as N tasks and stream their output")
    r.add_argument("--master", help="HOST:PORT (default: an embedded cluster)")
    r.add_argument("-n", "--tasks", type=int, default=1)
    r.add_argument("--cpus", type=_positive, default=0.1)
    r.add_argument("--mem", type=_positive, default=32.0)
    r.add_argument("--timeout", type=_positive)
    r.add_argument("cmd", nargs=argparse.REMAINDER, help="-- COMMAND...")

    _COMMANDS.update(security_cli.register(sub))
    ops_cli.add_drain_command(sub)

    d = sub.add_parser("demo", help="start an embedded cluster and run real work through it")
    d.add_argument("--agents", type=int, default=2)
    d.add_argument("--keep-open", action="store_true",
                   help="keep the cluster and its dashboard up after the demo (Ctrl-C stops)")
    from substrate.submit import commands as batch  # submit, logs, config
    batch.add_parsers(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return int(_COMMANDS[args.command](args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        from substrate.errors import SubstrateError
        if isinstance(exc, SubstrateError):
            print(f"offerpool: {exc}", file=sys.stderr)
            return 1
        raise


def _master(args: argparse.Namespace) -> int:
    from substrate.master import MasterConfig, main as master_main

    config = MasterConfig(agent_heartbeat_interval=args.agent_heartbeat,
                          agent_max_missed_heartbeats=args.agent_missed_heartbeats,
                          offer_timeout=args.offer_timeout or None, quota=dict(args.quota))

    def ready(master) -> None:
        info = {"address": master.address, "http": master.http_url}
        if args.ready_json:
            print(json.dumps(info), flush=True)
        else:
            print(f"master {master.core.master_id} on {master.address}; "
                  f"dashboard at {master.http_url}/", flush=True)

    from substrate.master.ha import master_options
    return master_main(args.host, args.port, None if args.http_port < 0 else args.http_port,
                       config, ready=ready, security=security_cli.server_security_from_args(args),
                       **master_options(args))


def _parse_ports(text: str) -> tuple:
    ranges = []
    for part in filter(None, text.split(",")):
        begin, _, end = part.partition("-")
        ranges.append((int(begin), int(end or begin)))
    return tuple(ranges)


def _agent(args: argparse.Namespace) -> int:
    from substrate.agent import AgentConfig, main as agent_main
    from substrate.agent.resources_probe import probe as probe_resources
    from substrate.resources import Resources

    from substrate.submit.commands import agent_settings, agent_work_dir
    args.work_dir = agent_work_dir(args)
    resources = None
    if any(v is not None for v in (args.cpus, args.mem, args.disk, args.gpus)) or args.ports:
        probed = probe_resources(args.work_dir)
        resources = Resources(
            cpus=probed.cpus if args.cpus is None else args.cpus,
            mem=probed.mem if args.mem is None else args.mem,
            disk=probed.disk if args.disk is None else args.disk,
            gpus=probed.gpus if args.gpus is None else args.gpus,
            ports=_parse_ports(args.ports) if args.ports else probed.ports)
    config = AgentConfig(master=args.master, host=args.host, port=args.port,
                         work_dir=args.work_dir, resources=resources,
                         **({"hostname": args.hostname} if args.hostname else {}),
                         **ops_cli.agent_options(args))
    agent_settings(args, config)

    def ready(agent) -> None:
        if args.ready_json:
            print(json.dumps({"address": agent.address, "agent_id": agent.agent_id}), flush=True)
        else:
            print(f"agent {agent.agent_id} on {agent.address}, master {args.master}", flush=True)

    return agent_main(config, ready=ready, security=security_cli.server_security_from_args(args))


def _up(args: argparse.Namespace) -> int:
    import threading

    from substrate.local import LocalCluster

    cluster = LocalCluster(agents=args.agents, master_port=args.port, http_port=args.http_port)
    cluster.start()
    print(f"master  {cluster.master}\nstate   {cluster.dashboard_url}/state\n"
          f"metrics {cluster.dashboard_url}/metrics\ndashboard {cluster.dashboard_url}/\n"
          f"agents  {args.agents}\n"
          "Ctrl-C to stop.", flush=True)
    try:
        threading.Event().wait()
    finally:
        cluster.stop()
    return 0


def _status(args: argparse.Namespace) -> int:
    import grpc

    from substrate.security.client import Credentials, security_error
    from substrate.v1 import pb, rpc

    from substrate.detector import MasterLocator
    locator = MasterLocator(args.master)
    try:
        address = locator.resolve_blocking(timeout=10)
    finally:
        locator.close()
    creds = Credentials.from_environment()
    try:
        with creds.channel(address) as channel:
            reply = rpc.MasterStub(channel).GetState(pb.StateRequest(), timeout=10,
                                                     metadata=creds.metadata)
    except grpc.RpcError as exc:
        refused = security_error(exc, f"the master at {args.master}")
        if refused is not None:
            raise refused from None
        print(f"offerpool: cannot reach the master at {args.master}: {exc.code().name}",
              file=sys.stderr)
        return 1
    state = json.loads(reply.json)
    if args.json:
        print(json.dumps(state, indent=2))
        return 0
    print(f"master {state['master_id']} (epoch {state['epoch']})")
    print(f"agents: {len(state['agents'])}")
    for agent in state["agents"]:
        res, used = agent["resources"], agent["used"]
        print(f"  {agent['id']}  {agent['hostname']}  cpus {used['cpus']:g}/{res['cpus']:g}  "
              f"mem {used['mem']:g}/{res['mem']:g} MiB  tasks {agent['tasks']}"
              + ("" if agent["connected"] else "  (disconnected)")
              + ("  (draining)" if agent.get("draining") else ""))
    print(f"frameworks: {len(state['frameworks'])}")
    for fw in state["frameworks"]:
        print(f"  {fw['id']}  {fw['name']!r}  role {fw['role']}  share {fw['share']:.3f}  "
              f"tasks {len(fw['tasks'])}" + ("" if fw["connected"] else "  (disconnected)"))
        for task in fw["tasks"]:
            print(f"    {task['id']}  {task['state']}  on {task['agent_id']}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from substrate.frameworks.run import run_command

    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        print("offerpool run: give a command after --", file=sys.stderr)
        return 2
    result = run_command(cmd, args.tasks, master=args.master, cpus=args.cpus, mem=args.mem,
                         timeout=args.timeout)
    failed = [t for t, s in result.states.items() if s != "FINISHED"]
    print(f"{len(result.states) - len(failed)}/{len(result.states)} tasks finished"
          + (f"; failed: {', '.join(sorted(failed))}" if failed else ""))
    return result.exit_code


def _demo(args: argparse.Namespace) -> int:
    from substrate.demo import run_demo
    return run_demo(agents=args.agents, keep_open=args.keep_open)


_COMMANDS = {"master": _master, "agent": _agent, "up": _up, "status": _status, "run": _run,
             "demo": _demo, "drain": ops_cli.run_drain}
from substrate.submit.commands import COMMANDS as _BATCH, status as _with_drivers  # noqa: E402
_COMMANDS.update(_BATCH, status=_with_drivers(_status))

if __name__ == "__main__":
    sys.exit(main())
