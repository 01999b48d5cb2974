"""Where a map output lives on a substrate cluster, and how a reducer gets its bytes.

Executors of the substrate backend write map outputs under their framework directory on the
agent (``ExecutorDriver.framework_dir``), which outlives the executor. A
:class:`~dataflow.shuffle.MapStatus` records that place in its ``location`` string, built by
:func:`make_location` from the executor id, the agent's address and the framework id. A reducer
on the same agent opens the file directly; any other reducer asks the agent that holds it with
``substrate.read_agent_file``. Recomputing lost outputs is the DAG scheduler's job: this module
only turns every way a fetch can fail into :class:`~dataflow.errors.FetchFailedError`.

Examples
--------
>>> loc = make_location("df-3", "127.0.0.1:5050", "fw-1")
>>> parse_location(loc)
('df-3', '127.0.0.1:5050', 'fw-1')
>>> parse_location("inline")
('inline', '', '')
"""
from __future__ import annotations

import io
from typing import BinaryIO

import substrate

from .errors import FetchFailedError
from .shuffle import BlockFetcher, LocalBlockFetcher, MapStatus

_SEP = "|"


def make_location(executor_id: str, agent_address: str, framework_id: str) -> str:
    """The ``MapStatus.location`` / executor id string of a substrate executor."""
    return _SEP.join((executor_id, agent_address, framework_id))


def parse_location(location: str) -> tuple[str, str, str]:
    """``(executor_id, agent_address, framework_id)``; the last two are empty when unknown."""
    parts = location.split(_SEP)
    if len(parts) != 3:
        return location, "", ""
    return parts[0], parts[1], parts[2]


def shuffle_relpath(status: MapStatus, reduce_id: int) -> str:
    """Path of one bucket relative to the framework directory."""
    return f"shuffle/{status.shuffle_id}/{status.map_id}.{status.attempt}/{reduce_id}"


class RemoteBlockFetcher(BlockFetcher):
    """Opens buckets on this agent from disk and on other agents through the agent.

    Parameters
    ----------
    shuffle_root : str
        This executor's ``<framework_dir>/shuffle``.
    agent_address : str
        The address of the agent this executor runs on.
    timeout : float
        Seconds allowed for one remote read.
    """

    def __init__(self, shuffle_root: str, agent_address: str, timeout: float = 60.0) -> None:
        self.local = LocalBlockFetcher(shuffle_root)
        self.agent_address = agent_address
        self.timeout = timeout
        self.remote_reads = 0

    def open(self, status: MapStatus, reduce_id: int) -> BinaryIO:
        _, address, framework_id = parse_location(status.location)
        if not address or address == self.agent_address:
            return self.local.open(status, reduce_id)
        if status.sizes[reduce_id] == 0:
            return io.BytesIO(b"")
        try:
            data = substrate.read_agent_file(address, framework_id,
                                             shuffle_relpath(status, reduce_id),
                                             timeout=self.timeout)
        except substrate.SubstrateError as exc:
            raise FetchFailedError(status.shuffle_id, status.map_id, reduce_id,
                                   status.location, f"{type(exc).__name__}: {exc}") from None
        self.remote_reads += 1
        return io.BytesIO(data)
