"""The command-line side of batch pipelines: ``submit``, ``kill``, ``logs``, ``config``,
driver status.

:func:`add_parsers` adds the sub-commands to ``offerpool``'s parser and :data:`COMMANDS` maps
them to their functions; :func:`status` wraps the master status with the submitted drivers;
:func:`agent_settings` gives ``offerpool agent`` the configured sandbox and fetcher settings.
Every value with a setting follows the precedence of :mod:`substrate.config`.
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Callable

from substrate.config import Config, load


def _config(args: argparse.Namespace, **flags: Any) -> Config:
    return load(flags=flags, path=getattr(args, "config", None))


def _split(text: str) -> list[str]:
    return [p for p in (text or "").split(",") if p]


def add_parsers(sub: "argparse._SubParsersAction") -> None:
    s = sub.add_parser("submit", help="run a script as a driver, shipping its code and files")
    s.add_argument("--master", help="HOST:PORT (default: the 'master' setting)")
    s.add_argument("--py-files", default="", help="comma-separated .py/.zip/.egg/.whl files "
                   "or package directories to ship to every executor")
    s.add_argument("--files", default="", help="comma-separated files to ship to every "
                   "executor (find them with dataflow.SparkFiles.get)")
    s.add_argument("--cluster", action="store_true", help="run the driver as a task on the "
                   "cluster instead of here")
    s.add_argument("--supervise", action="store_true", help="relaunch the driver when it dies")
    s.add_argument("--max-retries", type=int, help="relaunches allowed with --supervise")
    s.add_argument("--detach", "-d", action="store_true", help="print the driver's id and "
                   "return at once; the submission goes on in the background (see "
                   "`offerpool status`, `offerpool logs ID`, `offerpool kill ID`)")
    s.add_argument("--config", help="config file (TOML)")
    s.add_argument("script")
    s.add_argument("args", nargs=argparse.REMAINDER)

    lg = sub.add_parser("logs", help="print a task's or a submitted driver's stdout/stderr")
    lg.add_argument("task_id")
    lg.add_argument("--master", help="HOST:PORT (default: the 'master' setting)")
    lg.add_argument("--follow", "-f", action="store_true", help="keep printing until it ends")
    which = lg.add_mutually_exclusive_group()
    which.add_argument("--stdout", action="store_true", help="only stdout")
    which.add_argument("--stderr", action="store_true", help="only stderr")
    which.add_argument("--submitter", action="store_true", help="a detached submission's own "
                       "messages (placement, relaunches, errors)")
    lg.add_argument("--config", help="config file (TOML)")

    k = sub.add_parser("kill", help="stop a submitted driver (and its supervision)")
    k.add_argument("driver_id", help="the id `submit` printed (or the driver's task id)")
    k.add_argument("--timeout", type=float, default=30.0, help="seconds the submitter has "
                   "to stop its driver before it is killed outright")
    k.add_argument("--config", help="config file (TOML)")

    c = sub.add_parser("config", help="show the settings in force and where each comes from")
    c.add_argument("--config", help="config file (TOML)")


def submit(args: argparse.Namespace) -> int:
    cfg = _config(args, master=args.master, **{"submit.max_retries": args.max_retries})
    master = cfg["master"]
    script_args = list(args.args)
    if script_args and script_args[0] == "--":
        script_args = script_args[1:]
    common = dict(master=master, py_files=_split(args.py_files), files=_split(args.files),
                  supervise=args.supervise, max_retries=cfg["submit.max_retries"],
                  state_dir=cfg.path_value("state_dir"))
    from substrate.errors import InvalidRequest
    if args.cluster and not master:
        raise InvalidRequest("--cluster needs a master: --master HOST:PORT, "
                             "OFFERPOOL_MASTER or 'master' in the config file")
    if args.detach:
        import os
        from substrate.submit.client import check_inputs
        from substrate.submit.detach import spawn
        check_inputs(args.script, common["py_files"], common["files"])   # fail here, not later
        absolute = {k: [os.path.abspath(p) for p in common[k]] for k in ("py_files", "files")}
        spec = dict(common, **absolute, script=os.path.abspath(args.script), args=script_args,
                    cluster=args.cluster)
        if args.cluster:
            spec.update(cpus=cfg["submit.cpus"], mem=cfg["submit.mem"],
                        ship_host=cfg["ship.host"])
        driver_id = spawn(spec)
        print(driver_id, flush=True)
        print(f"offerpool submit: driver {driver_id} detached; follow it with "
              f"`offerpool logs {driver_id} --follow`, stop it with `offerpool kill "
              f"{driver_id}`", file=sys.stderr, flush=True)
        return 0
    from substrate.submit.detach import stop_on_sigterm
    stop_on_sigterm()
    if args.cluster:
        from substrate.submit.cluster import run_cluster
        return run_cluster(args.script, script_args, cpus=cfg["submit.cpus"],
                           mem=cfg["submit.mem"], ship_host=cfg["ship.host"],
                           echo=lambda m: print(f"offerpool submit: {m}", file=sys.stderr,
                                                flush=True), **common)
    from substrate.submit.client import run_client
    return run_client(args.script, script_args, **common)


def logs(args: argparse.Namespace) -> int:
    from substrate.submit.logs import find_logs, print_logs
    cfg = _config(args, master=args.master)
    source = find_logs(args.task_id, cfg["master"], cfg.path_value("state_dir"))
    streams = ("stdout",) if args.stdout else ("stderr",) if args.stderr else \
        ("submitter",) if args.submitter else ("stdout", "stderr")
    print_logs(source, streams, args.follow)
    return 0


def kill(args: argparse.Namespace) -> int:
    from substrate.submit.detach import kill_driver
    record = kill_driver(_config(args).path_value("state_dir"), args.driver_id,
                         timeout=args.timeout)
    print(f"{record.id} {record.state}" + (f" ({record.message})" if record.message else ""))
    return 0 if record.state == "KILLED" else 1


def config(args: argparse.Namespace) -> int:
    print(_config(args).describe())
    return 0


def print_drivers(state_dir: str) -> None:
    from substrate.submit.records import list_records
    records = list_records(state_dir)
    print(f"submitted drivers: {len(records)}")
    for r in records:
        r = r.settle()     # a record whose submitter died shows LOST, not RUNNING forever
        state = r.state + (f" exit {r.exit_code}" if r.exit_code is not None else "")
        tries = f"attempts {r.attempts}" + (f"/{r.max_retries + 1}" if r.max_retries else "")
        where = f"task {r.task_id}" if r.mode == "cluster" else f"pid {r.pid}"
        mode = r.mode + (",detached" if r.detached else "")
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.created))
        print(f"  {r.id}  {mode:<16}  {state:<16}  {tries}  {where}  "
              f"{when}  {r.script}" + (f"  ({r.message})" if r.message else ""))


def status(inner: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """``offerpool status``: the master's view, then the submitted drivers."""
    def run(args: argparse.Namespace) -> int:
        code = inner(args)
        if not getattr(args, "json", False):
            print_drivers(load().path_value("state_dir"))
        return code
    return run


_AGENT_FLAGS = {"sandbox_keep": "agent.sandbox_keep", "gc_headroom": "agent.gc_headroom",
                "fetch_max_bytes": "agent.fetch_max_bytes"}


def add_agent_flags(parser: argparse.ArgumentParser) -> None:
    """``offerpool agent``'s flags for the sandbox GC and the fetcher."""
    parser.add_argument("--sandbox-keep", type=float, help="seconds finished sandboxes are "
                        "kept (default: the agent.sandbox_keep setting)")
    parser.add_argument("--gc-headroom", type=float, help="disk fraction to keep free")
    parser.add_argument("--fetch-max-bytes", type=int, help="largest URI the agent fetches")


def agent_work_dir(args: argparse.Namespace) -> str:
    """``offerpool agent``'s work directory: ``--work-dir``, else the setting."""
    cfg = load(flags={"agent.work_dir": getattr(args, "work_dir", None)},
               path=getattr(args, "config", None))
    return cfg.path_value("agent.work_dir")


def agent_settings(args: argparse.Namespace, agent_config: Any) -> None:
    """Fill an :class:`~substrate.agent.AgentConfig`'s sandbox GC and fetcher settings."""
    from substrate.agent.fetcher import FetcherConfig
    from substrate.agent.gc import GCPolicy
    cfg = load(flags={name: getattr(args, dest, None) for dest, name in _AGENT_FLAGS.items()},
               path=getattr(args, "config", None))
    agent_config.fetcher = FetcherConfig(
        max_bytes=cfg["agent.fetch_max_bytes"],
        max_extracted_bytes=cfg["agent.fetch_max_extracted_bytes"],
        cache_max_bytes=cfg["agent.fetch_cache_max_bytes"])
    agent_config.sandbox_gc = GCPolicy(keep_seconds=cfg["agent.sandbox_keep"],
                                       headroom=cfg["agent.gc_headroom"],
                                       interval=cfg["agent.gc_interval"])


COMMANDS = {"submit": submit, "kill": kill, "logs": logs, "config": config}
