"""Online detectors (pure, no I/O) and their registry.

Importing this package registers every detector; :data:`DEFAULT_VOLUME_DETECTOR`
names the one the product runs per mention-volume series (and the one the NAB
bench measures by default).

>>> from stormwatch.detectors import DEFAULT_VOLUME_DETECTOR, make
>>> make(DEFAULT_VOLUME_DETECTOR).name
'seasonal-baseline'
"""

from stormwatch.detectors import baselines, cooldown, river_wrappers, seasonal, share_cusum
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
    "make",
    "register",
    "restore",
    "river_wrappers",
    "seasonal",
    "share_cusum",
]
