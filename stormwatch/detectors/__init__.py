"""Online detectors (pure, no I/O) and the alert policy.

Importing this package registers the built-in detectors by name.
"""

from stormwatch.detectors import poisson  # noqa: F401  (registers "poisson-window")
from stormwatch.detectors.base import REGISTRY, Detector, Expectation, make, restore

__all__ = ["REGISTRY", "Detector", "Expectation", "make", "restore"]
