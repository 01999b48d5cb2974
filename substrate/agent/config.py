"""An agent's configuration: where the master is, what to offer, and its timing knobs.

This module owns the defaults (the Mesos-settled timings) and their validation. It does not
start anything; :class:`substrate.agent.Agent` reads it.
"""
from __future__ import annotations

import math
import os
import socket
from dataclasses import dataclass, field
from typing import Optional

from substrate.agent.fetcher import FetcherConfig
from substrate.agent.gc import GCPolicy
from substrate.errors import InvalidRequest
from substrate.resources import Resources

DEFAULT_MAX_PAYLOAD = 4 * 1024 * 1024
DEFAULT_BOOT_ID_FILE = "/proc/sys/kernel/random/boot_id"
RECOVER_MODES = ("reconnect", "cleanup")


@dataclass
class AgentConfig:
    """How an agent runs.

    Parameters
    ----------
    master : str
        The master's ``host:port``, or ``zk://host:port[,host:port]/path`` to follow the
        leader elected through ZooKeeper. Empty: no master link (the agent is driven through
        :meth:`Agent.handle_master_event`, as in unit tests).
    host : str
        Interface the agent's own gRPC server (executors connect to it) binds to.
    port : int
        Port of that server; 0 picks a free one.
    work_dir : str
        Sandboxes go to ``work_dir/sandboxes/<framework_id>/<executor_id or task_id>/``.
    resources : Resources or None
        What to offer; None probes the machine (see :mod:`substrate.agent.resources_probe`).
    hostname : str
        Name reported to the master (default: this machine's host name).
    attributes : dict
        Free-form ``str -> str`` attributes shown in offers.
    executor_shutdown_grace : float
        Seconds between SIGTERM (or an executor SHUTDOWN) and SIGKILL.
    executor_registration_timeout : float
        Seconds an executor has to subscribe after it was started.
    status_update_retry_initial, status_update_retry_max : float
        Retry interval of an unacknowledged status update: starts here, doubles, is capped.
    reconnect_backoff_max : float
        Cap of the exponential backoff between attempts to reach the master.
    max_payload_bytes : int
        Largest status ``data`` or framework message accepted; larger ones are refused.
    isolation : str
        ``auto``, ``cgroups``, ``cgroups-v2``, ``cgroups-v1``, ``posix`` or ``none`` (see
        :mod:`substrate.agent.isolation`).
    cgroup_root : str
        With ``cgroups-v2``: the cgroup2 mount to use (default: the first one mounted).
    container_pids_max : int
        Most processes (threads count too under cgroups) one executor or command task may have.
    isolation_poll_interval : float
        Seconds between two usage polls of the ``posix`` isolation.
    fetcher : FetcherConfig
        Limits and cache of the URI fetcher (:mod:`substrate.agent.fetcher`).
    sandbox_gc : GCPolicy
        How long finished sandboxes are kept (:mod:`substrate.agent.gc`).
    recover : str
        What a restarted agent does with the executors its previous run left behind (read from
        the checkpoint in ``work_dir/meta``): ``"reconnect"`` (the default) adopts them, so
        their tasks keep running; ``"cleanup"`` kills them and reports their tasks FAILED
        (``AGENT_RESTARTED``).
    boot_id_file : str
        Where the host's boot id is read; a changed boot id means the host rebooted, and the
        agent registers as a new agent (its old tasks are reported GONE).
    executor_recovery_timeout : float
        Seconds an executor waits for its agent to come back before it exits.
    allow_root_tasks : bool
        Whether a framework naming ``root`` (any uid-0 user) as its ``user`` may run tasks
        here; refused by default (a framework naming no user runs as the agent's user).
    executor_message_rate, executor_update_rate : float
        Messages and status updates per second one executor may send (token buckets whose
        burst is one second's worth); a flooding executor is slowed down, nothing is lost.

    Examples
    --------
    >>> cfg = AgentConfig(master="127.0.0.1:5050", work_dir="/tmp/agent")
    >>> cfg.port, cfg.executor_shutdown_grace, cfg.status_update_retry_max
    (0, 5.0, 600.0)
    >>> AgentConfig(master="m:1", executor_shutdown_grace=-1).validate()
    Traceback (most recent call last):
    ...
    substrate.errors.InvalidRequest: executor_shutdown_grace must be finite and >= 0, got -1
    """

    master: str = ""
    host: str = "127.0.0.1"
    port: int = 0
    work_dir: str = field(default_factory=lambda: os.path.join(os.getcwd(), "agent-work"))
    resources: Optional[Resources] = None
    hostname: str = field(default_factory=socket.gethostname)
    attributes: dict[str, str] = field(default_factory=dict)
    executor_shutdown_grace: float = 5.0
    executor_registration_timeout: float = 60.0
    status_update_retry_initial: float = 10.0
    status_update_retry_max: float = 600.0
    reconnect_backoff_max: float = 2.0
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD
    isolation: str = "none"
    cgroup_root: str = ""
    container_pids_max: int = 1024
    isolation_poll_interval: float = 0.25
    fetcher: FetcherConfig = field(default_factory=FetcherConfig)
    sandbox_gc: GCPolicy = field(default_factory=GCPolicy)
    recover: str = "reconnect"
    boot_id_file: str = DEFAULT_BOOT_ID_FILE
    executor_recovery_timeout: float = 900.0
    executor_message_rate: float = 2000.0
    executor_update_rate: float = 20000.0
    allow_root_tasks: bool = False

    def validate(self) -> "AgentConfig":
        """Check the values; returns ``self``. Raises :class:`InvalidRequest` on a bad one."""
        for name in ("executor_shutdown_grace", "executor_registration_timeout",
                     "status_update_retry_initial", "status_update_retry_max",
                     "reconnect_backoff_max", "executor_recovery_timeout"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise InvalidRequest(f"{name} must be finite and >= 0, got {value!r}")
        if self.status_update_retry_initial <= 0:
            raise InvalidRequest("status_update_retry_initial must be > 0")
        if self.status_update_retry_max < self.status_update_retry_initial:
            raise InvalidRequest("status_update_retry_max must be >= status_update_retry_initial")
        if not 0 <= int(self.port) <= 65535:
            raise InvalidRequest(f"port out of range: {self.port}")
        if self.recover not in RECOVER_MODES:
            raise InvalidRequest(f"recover must be one of {', '.join(RECOVER_MODES)}, "
                                 f"got {self.recover!r}")
        for name in ("executor_message_rate", "executor_update_rate"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise InvalidRequest(f"{name} must be finite and > 0, got {value!r}")
        if self.max_payload_bytes <= 0:
            raise InvalidRequest("max_payload_bytes must be > 0")
        from substrate.agent.isolation import MODES
        if self.isolation not in MODES:
            raise InvalidRequest(f"isolation must be one of {', '.join(MODES)}; "
                                 f"got {self.isolation!r}")
        if not isinstance(self.container_pids_max, int) or self.container_pids_max < 1:
            raise InvalidRequest(f"container_pids_max must be an int >= 1, "
                                 f"got {self.container_pids_max!r}")
        poll = self.isolation_poll_interval
        if not isinstance(poll, (int, float)) or not math.isfinite(poll) or poll <= 0:
            raise InvalidRequest(f"isolation_poll_interval must be finite and > 0, got {poll!r}")
        if self.master.startswith("zk://"):
            from substrate.detector import parse_zk_url
            parse_zk_url(self.master)
        elif self.master and ":" not in self.master:
            raise InvalidRequest(f"master must be 'host:port' or 'zk://host:port/path', "
                                 f"got {self.master!r}")
        for k, v in self.attributes.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise InvalidRequest("attributes must map str to str")
        return self

    @property
    def grpc_message_limit(self) -> int:
        """gRPC message size limit: room for a batch of maximal payloads plus envelopes."""
        return max(64 * 1024 * 1024, 4 * self.max_payload_bytes + 1024 * 1024)
