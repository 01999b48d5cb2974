"""A token bucket: how an agent keeps one flooding executor from swamping the master.

This module owns the arithmetic only (a pure state machine over an injected clock); the caller
decides what to do while it must wait (the agent stops reading the executor's stream, so gRPC
flow control pushes back on the executor and nothing is dropped).

Examples
--------
>>> now = [0.0]
>>> bucket = TokenBucket(rate=10, burst=5, clock=lambda: now[0])
>>> [bucket.take(1) for _ in range(5)]
[0.0, 0.0, 0.0, 0.0, 0.0]
>>> bucket.take(1)          # empty: wait a tenth of a second for the next token
0.1
>>> now[0] = 1.0; bucket.take(3)    # refilled (capped at the burst)
0.0
"""
from __future__ import annotations

import math
import time
from typing import Callable


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up.

    Parameters
    ----------
    rate : float
        Tokens added per second (> 0).
    burst : float
        Capacity of the bucket (> 0); a single take larger than this is allowed once the
        bucket is full, and leaves it in debt.
    clock : callable
        Monotonic time in seconds.
    """

    def __init__(self, rate: float, burst: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not (math.isfinite(rate) and rate > 0 and math.isfinite(burst) and burst > 0):
            raise ValueError(f"rate and burst must be finite and > 0, got {rate!r}, {burst!r}")
        self.rate, self.burst = float(rate), float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._at = clock()

    def _refill(self) -> None:
        now = self._clock()
        if now > self._at:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = max(self._at, now)

    def take(self, cost: float = 1.0) -> float:
        """Spend ``cost`` tokens; returns how long to wait before acting (0: act now).

        The tokens are spent either way (the bucket may go into debt), so a caller that waits
        the returned time and then acts never exceeds ``rate`` on average.
        """
        self._refill()
        self._tokens -= cost
        if self._tokens >= 0:
            return 0.0
        return -self._tokens / self.rate

    @property
    def tokens(self) -> float:
        """Tokens available now (negative: in debt)."""
        self._refill()
        return self._tokens
