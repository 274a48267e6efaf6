"""Online detectors (pure, no I/O), their registry and the alert policy.

Importing this package registers every detector; :data:`DEFAULT_VOLUME_DETECTOR`
names the one measured on NAB (``stormwatch bench nab`` runs it by default).

>>> from stormwatch.detectors import DEFAULT_VOLUME_DETECTOR, make
>>> make(DEFAULT_VOLUME_DETECTOR).name
'seasonal-baseline'
"""

from stormwatch.detectors import (
    baselines,
    cooldown,
    ensemble,
    poisson,
    river_wrappers,
    seasonal,
    share_cusum,
)
from stormwatch.detectors.base import REGISTRY, Detector, Expectation, make, register, restore

DEFAULT_VOLUME_DETECTOR = "seasonal-baseline"
DEFAULT_SHARE_DETECTOR = "share-cusum"

__all__ = [
    "DEFAULT_SHARE_DETECTOR",
    "DEFAULT_VOLUME_DETECTOR",
    "REGISTRY",
    "Detector",
    "Expectation",
    "baselines",
    "cooldown",
    "ensemble",
    "make",
    "poisson",
    "register",
    "restore",
    "river_wrappers",
    "seasonal",
    "share_cusum",
]
