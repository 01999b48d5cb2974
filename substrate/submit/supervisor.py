"""When a supervised driver dies: relaunch it, or give up — a pure decision.

Examples
--------
>>> s = Supervisor(supervise=True, max_retries=1)
>>> s.started(), s.ended(-9)
(1, 'relaunch')
>>> s.started(), s.ended(1)
(2, 'FAILED')
>>> Supervisor(supervise=False, max_retries=5).ended(0)
'FINISHED'
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Supervisor:
    """Counts attempts; ``ended`` says ``"relaunch"``, ``"FINISHED"`` or ``"FAILED"``.

    A driver that exits with status 0 is finished. Any other end (a non-zero status, a
    signal, a lost or failed task) is relaunched when supervising, at most ``max_retries``
    times after the first attempt.
    """

    supervise: bool
    max_retries: int
    attempts: int = 0
    killed: bool = False

    def started(self) -> int:
        """Count an attempt; returns its number (1 for the first)."""
        self.attempts += 1
        return self.attempts

    def ended(self, exit_code: int) -> str:
        if exit_code == 0:
            return "FINISHED"
        if self.killed:
            return "KILLED"
        if self.supervise and self.attempts <= self.max_retries:
            return "relaunch"
        return "FAILED"
