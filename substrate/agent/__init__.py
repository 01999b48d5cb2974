"""The substrate agent: one daemon per machine that runs tasks and executors for the master.

:class:`Agent` registers with the master, launches command tasks and framework executors as
child processes in sandboxes, and delivers their status updates at least once. Run it inside an
existing asyncio loop (the embedded cluster does) or standalone with :func:`main`.

Examples
--------
>>> from substrate.agent import AgentConfig
>>> AgentConfig(master="127.0.0.1:5050").executor_registration_timeout
60.0
"""
from substrate.agent.config import AgentConfig
from substrate.agent.daemon import Agent, main

__all__ = ["Agent", "AgentConfig", "main"]
