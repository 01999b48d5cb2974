"""offerpool's substrate: a resource-offer cluster manager in the spirit of Apache Mesos.

This module is the whole public API for frameworks: they import only what is exported here
(a test walks the imports of ``dataflow``, ``genetic`` and ``substrate.frameworks`` to keep it
so). A master pools agents' resources and offers them to frameworks; a framework's
:class:`Scheduler` accepts offers and launches tasks, which run in its :class:`Executor`
processes on the agents.

Examples
--------
>>> import substrate
>>> substrate.Resources(cpus=1, mem=128).contains(substrate.Resources(cpus=0.5))
True
"""
from substrate.config import default_master
from substrate.detector import check_master_address
from substrate.errors import (
    AccessDenied, AuthenticationError, ClusterError, ConnectionLost, InvalidRequest,
    PayloadRejected, RemoteError, ResourceError, SubscriptionError, SubstrateError,
)
from substrate.executor import Executor, ExecutorDriver
from substrate.files import RemoteFileNotFound, iter_agent_file, read_agent_file
from substrate.local import LocalCluster
from substrate.resources import Resources
from substrate.scheduler import Scheduler, SchedulerDriver
from substrate.security.client import Credentials
from substrate.security.payload import PayloadKey
from substrate.shipping import (
    ShippingError, apply_manifest, shipment, shipped_file, sync_from_driver,
)
from substrate.types import (
    TERMINAL_STATES, AgentInfo, CommandInfo, ExecutorInfo, Filters, FrameworkInfo, Offer, Reason,
    Source, TaskInfo, TaskState, TaskStatus,
)
from substrate.uris import FetchURI

__all__ = [
    "AccessDenied", "AuthenticationError", "Credentials", "PayloadKey", "PayloadRejected",
    "AgentInfo", "ClusterError", "CommandInfo", "ConnectionLost", "Executor", "ExecutorDriver",
    "ExecutorInfo", "Filters", "FrameworkInfo", "InvalidRequest", "LocalCluster", "Offer",
    "Reason", "RemoteError", "RemoteFileNotFound", "ResourceError", "Resources", "Scheduler", "SchedulerDriver",
    "Source", "SubscriptionError", "SubstrateError", "TERMINAL_STATES", "TaskInfo", "TaskState",
    "TaskStatus", "iter_agent_file", "read_agent_file",
    # batch pipelines: fetcher URIs, code and file shipping, the configured master
    "FetchURI", "ShippingError", "apply_manifest", "check_master_address", "default_master",
    "shipment", "shipped_file",
    "sync_from_driver",
]
