"""Where the NLP code finds data and keeps its cache.

Two settings, both environment variables:

- ``STORMWATCH_DATA``: the shared data folder (benchmarks and tests only), default
  ``../shared/data`` relative to the repository root;
- ``STORMWATCH_CACHE``: converted models, cached embeddings; default
  ``~/.cache/stormwatch``. Nothing in it is ever committed.

>>> import os
>>> os.environ["STORMWATCH_CACHE"] = "/tmp/sw-cache-doctest"
>>> str(cache_dir())
'/tmp/sw-cache-doctest'
>>> del os.environ["STORMWATCH_CACHE"]
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def cache_dir() -> Path:
    """The cache folder (not created here)."""
    value = os.environ.get("STORMWATCH_CACHE")
    return Path(value).expanduser() if value else Path.home() / ".cache" / "stormwatch"


def data_dir() -> Path:
    """The shared data folder (may not exist: callers skip or fail with a clear reason)."""
    value = os.environ.get("STORMWATCH_DATA")
    return Path(value).expanduser() if value else (REPO_ROOT.parent / "shared" / "data").resolve()
