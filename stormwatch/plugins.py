"""Your own scorers and detectors: modules imported before the pipeline is built.

A module listed in ``STORMWATCH_PLUGINS`` (comma-separated import paths) registers its
classes with :func:`stormwatch.nlp.base.register` or
:func:`stormwatch.detectors.base.register` when imported; settings can then name them
(``STORMWATCH_SCORER``, ``STORMWATCH_DETECTOR``), in the worker and the local runner alike.

>>> load(["json"])
['json']
>>> load(["no_such_module_xyz"])
Traceback (most recent call last):
...
ValueError: STORMWATCH_PLUGINS: cannot import 'no_such_module_xyz': No module named 'no_such_module_xyz'
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable


def load(modules: Iterable[str]) -> list[str]:
    """Import each module (once); return their names. A clear error if one is missing."""
    done = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ValueError(f"STORMWATCH_PLUGINS: cannot import {name!r}: {exc}") from None
        done.append(name)
    return done
