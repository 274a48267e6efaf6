"""The Scorer interface: a batch of texts in, one :class:`~stormwatch.model.Sentiment` each out.

Scorers are plain objects without I/O once built. The stream runtime batches posts
(by size or time) and calls :meth:`Scorer.score` once per batch, so a transformer
scorer can pad and run the batch together.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import Any

from stormwatch.model import Sentiment


class Scorer(abc.ABC):
    """Scores texts. ``name`` is recorded on every post it scores."""

    name: str

    @abc.abstractmethod
    def score(self, texts: Sequence[str], langs: Sequence[str | None] | None = None
              ) -> list[Sentiment]:
        """One Sentiment per text, in order. ``langs`` are ISO-639-1 hints (may be None)."""


REGISTRY: dict[str, Callable[..., Scorer]] = {}


def register(name: str) -> Callable[[Callable[..., Scorer]], Callable[..., Scorer]]:
    """Decorator: make a scorer factory available under ``name``."""

    def deco(factory: Callable[..., Scorer]) -> Callable[..., Scorer]:
        REGISTRY[name] = factory
        return factory

    return deco


def make(name: str, **options: Any) -> Scorer:
    """Build a scorer by registered name, e.g. ``make("lexicon")``."""
    try:
        factory = REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY)) or "none"
        raise KeyError(f"unknown scorer {name!r}; known: {known}") from None
    return factory(**options)
