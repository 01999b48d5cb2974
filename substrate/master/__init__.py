"""The master: pools agents' resources, offers them to frameworks, tracks their tasks.

Internal to the substrate; frameworks talk to it only through the scheduler driver.
"""
from substrate.master.core import MasterConfig, MasterCore
from substrate.master.server import Master, main

__all__ = ["Master", "MasterConfig", "MasterCore", "main"]
