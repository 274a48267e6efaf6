"""Rate limits: a token bucket per client, shared by the webhook connector and the HTTP API.

>>> t = [0.0]
>>> tb = TokenBucket(rate=1.0, burst=2, clock=lambda: t[0])
>>> [tb.take("a") for _ in range(3)]
[0.0, 0.0, 1.0]
"""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    """Requests per client: ``rate`` per second sustained, ``burst`` at once.

    >>> t = [0.0]
    >>> tb = TokenBucket(rate=1.0, burst=2, clock=lambda: t[0])
    >>> [tb.take("a") for _ in range(3)]
    [0.0, 0.0, 1.0]
    >>> t[0] = 1.0; tb.take("a"), tb.take("b")
    (0.0, 0.0)
    """

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic,
                 max_clients: int = 10_000) -> None:
        self.rate, self.burst, self.clock, self.max_clients = rate, burst, clock, max_clients
        self._tokens: dict[str, tuple[float, float]] = {}

    def take(self, client: str) -> float:
        """0.0 if the request may go ahead (a token is taken), else seconds to wait."""
        now = self.clock()
        tokens, last = self._tokens.get(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            if len(self._tokens) >= self.max_clients and client not in self._tokens:
                self._tokens.clear()  # bounded memory; forgetting only ever lets a client through
            self._tokens[client] = (tokens - 1.0, now)
            return 0.0
        self._tokens[client] = (tokens, now)
        return (1.0 - tokens) / self.rate
