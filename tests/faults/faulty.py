"""A scorer and a detector that fail on purpose, loaded by fault-test workers as a plugin.

``STORMWATCH_PLUGINS=tests.faults.faulty`` registers them:

* scorer ``faulty``: the lexicon scorer, except that a batch with a text containing
  ``POISON-SCORER`` raises, and ``SLOW-SCORER:<seconds>`` sleeps that long first;
* detector ``faulty-seasonal``: the seasonal baseline, except that a bucket of exactly
  ``POISON_COUNT`` posts makes it raise.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence

from stormwatch.detectors.base import Observation, register
from stormwatch.detectors.seasonal import SeasonalBaseline
from stormwatch.model import Sentiment
from stormwatch.nlp import base
from stormwatch.nlp.lexicon import LexiconScorer

POISON_COUNT = 13
_SLOW = re.compile(r"SLOW-SCORER:(\d+(?:\.\d+)?)")


class FaultyScorer(LexiconScorer):
    name = "faulty"

    def score(self, texts: Sequence[str], langs: Sequence[str | None] | None = None) -> list[Sentiment]:
        for text in texts:
            if "POISON-SCORER" in text:
                raise RuntimeError("poisoned post")
            slow = _SLOW.search(text)
            if slow:
                time.sleep(float(slow.group(1)))
        return super().score(texts, langs)


base.register("faulty")(FaultyScorer)


@register
class FaultySeasonal(SeasonalBaseline):
    name = "faulty-seasonal"

    def score_one(self, x: Observation) -> float:
        if x["value"] == POISON_COUNT:
            raise ValueError(f"poisoned bucket of {POISON_COUNT} posts")
        return super().score_one(x)
