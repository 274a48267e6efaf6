"""A worker's readiness after a rebalance, in its log.

Its own module on purpose: Faust services get a logger per defining module with a
``NullHandler`` attached, which would swallow the warnings ``stream.py`` logs before
Faust has set up logging (the watch-config version line that the reload test reads).
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

import faust

log = logging.getLogger(__name__)

#: Logged by every worker when it is ready after a rebalance (see :class:`RebalanceLog`).
READY = "ready after rebalance"


class RebalanceLog(faust.Sensor):
    """Logs when a rebalance starts and when this worker is ready again (its tables
    restored, its input partitions sought to where it resumes), at warning level so a
    worker run with ``--loglevel warn`` shows both.

    Between the two lines the worker is still recovering: traffic started right after a
    scale-out should wait for the second (``bench_kafka`` does). A rebalance interrupted
    by the next one logs only the first line; the numbers pair them.
    """

    def on_rebalance_start(self, app: faust.types.AppT) -> dict[str, Any]:
        state = super().on_rebalance_start(app)
        log.warning("rebalance #%d started", app.rebalancing_count)
        return state

    def on_rebalance_end(self, app: faust.types.AppT, state: dict[str, Any]) -> None:
        log.warning("%s #%d (%.1f s)", READY, app.rebalancing_count,
                    time.monotonic() - state.get("time_start", time.monotonic()))


def ready_after_rebalance(log_text: str) -> bool:
    """Whether a worker's log says it finished its latest rebalance.

    >>> ready_after_rebalance("rebalance #1 started\\nready after rebalance #1 (0.1 s)")
    True
    >>> ready_after_rebalance("... ready after rebalance #1 (0.1 s)\\n... rebalance #2 started")
    False
    >>> ready_after_rebalance("starting")
    False
    """
    started = re.findall(r"rebalance #(\d+) started", log_text)
    ready = re.findall(re.escape(READY) + r" #(\d+)", log_text)
    return bool(started) and bool(ready) and ready[-1] == started[-1]
