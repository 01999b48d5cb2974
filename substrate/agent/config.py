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

from substrate.errors import InvalidRequest
from substrate.resources import Resources

DEFAULT_MAX_PAYLOAD = 4 * 1024 * 1024


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

    def validate(self) -> "AgentConfig":
        """Check the values; returns ``self``. Raises :class:`InvalidRequest` on a bad one."""
        for name in ("executor_shutdown_grace", "executor_registration_timeout",
                     "status_update_retry_initial", "status_update_retry_max",
                     "reconnect_backoff_max"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise InvalidRequest(f"{name} must be finite and >= 0, got {value!r}")
        if self.status_update_retry_initial <= 0:
            raise InvalidRequest("status_update_retry_initial must be > 0")
        if self.status_update_retry_max < self.status_update_retry_initial:
            raise InvalidRequest("status_update_retry_max must be >= status_update_retry_initial")
        if not 0 <= int(self.port) <= 65535:
            raise InvalidRequest(f"port out of range: {self.port}")
        if self.max_payload_bytes <= 0:
            raise InvalidRequest("max_payload_bytes must be > 0")
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
