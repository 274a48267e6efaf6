"""A scorer that does no work: every post neutral. ``stormwatch bench pipeline --scorer none``
loads it (as a plugin, in the worker too) to show the pipeline's own cost without a model.

>>> from stormwatch import nlp
>>> nlp.make("none").score(["anything"])[0].label
'neutral'
"""

from __future__ import annotations

from collections.abc import Sequence

from stormwatch.model import Sentiment
from stormwatch.nlp.base import Scorer, register

_NEUTRAL = Sentiment(label="neutral", score=1.0, negative=0.0, model="none")


@register("none")
class NullScorer(Scorer):
    name = "none"

    def score(self, texts: Sequence[str], langs: Sequence[str | None] | None = None) -> list[Sentiment]:
        return [_NEUTRAL] * len(texts)
