"""A small rule-based sentiment scorer for English and German service complaints.

It needs no model files, so it is the light fallback when torch is not installed
and the scorer the fast tests use. Its word lists are written for customer-service
language (delays, outages, refunds, fraud). Negators flip the next three words.

>>> s = LexiconScorer()
>>> [x.label for x in s.score(["Thanks, great service!", "Flight Cancelled again, worst airline",
...                            "Die App geht nicht, keine Überweisung möglich", "Gate B12"])]
['positive', 'negative', 'negative', 'neutral']
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from stormwatch.model import Sentiment
from stormwatch.nlp.base import Scorer, register

_NEGATIVE = """
    angry annoyed annoying awful bad broke broken cancel cancelled canceled cancellation
    cant can't complain complaint crash crashed delay delayed delays disappointed
    disappointing disappointment disaster down dreadful dumb fail failed failing fails
    failure fraud frustrated frustrating furious garbage hacked hate hated hold horrible
    hours idiots incompetent issue issues joke lie lied lies lost mess missed nightmare
    nothing outage overbooked pathetic phishing poor problem problems refund ridiculous rude
    sad scam shame shameful sick slow sorry stranded stuck suck sucks terrible unacceptable
    unhappy unprofessional useless wait waited waiting worse worst wrong
    ärgerlich ärger ausfall ausgefallen betrug chaos datenleck enttäuscht enttäuschend
    fehler frechheit gehackt gebühren katastrophe kaputt
    miserabel mist nervig peinlich problem probleme scheiße schlecht schlimm störung
    unverschämt unmöglich verspätet verspätung warten wartezeit wütend zumutung
"""
_POSITIVE = """
    amazing appreciate appreciated awesome beautiful best better brilliant cool enjoy enjoyed
    excellent fantastic fast favorite friendly glad good great happy helpful impressed kind
    love loved lovely nice perfect pleasant quick recommend smooth super thank thankful
    thanks thx wonderful wow yay
    danke dankeschön freundlich gern gut großartig hilfreich klasse lob perfekt prima
    schnell schön spitze super toll zufrieden
"""
_NEGATORS = {"not", "no", "never", "don't", "dont", "didn't", "didnt", "isn't", "isnt",
             "wasn't", "wasnt", "won't", "wont", "cannot", "nicht", "nie", "niemals", "kein",
             "keine", "keinen"}

NEGATIVE_WORDS = frozenset(_NEGATIVE.split())
POSITIVE_WORDS = frozenset(_POSITIVE.split())
_TOKEN = re.compile(r"[\w'’]+", re.UNICODE)


class LexiconScorer(Scorer):
    """Counts positive and negative words; P(negative) is a logistic of the balance."""

    name = "lexicon-v1"

    def score_one(self, text: str) -> Sentiment:
        tokens = [t.replace("’", "'") for t in _TOKEN.findall(text.lower())]
        balance = 0.0
        flip_until = -1
        for i, tok in enumerate(tokens):
            if tok in _NEGATORS:
                # "not good" flips the next polar word; a bare "geht nicht" / "no wifi"
                # is a complaint on its own.
                following = tokens[i + 1:i + 4]
                if any(w in POSITIVE_WORDS or w in NEGATIVE_WORDS for w in following):
                    flip_until = i + 3
                else:
                    balance -= 1
                continue
            polarity = (tok in POSITIVE_WORDS) - (tok in NEGATIVE_WORDS)
            if polarity and i <= flip_until:
                polarity = -polarity
                flip_until = -1
            balance += polarity
        p_neg = 1.0 / (1.0 + math.exp(1.5 * balance))
        if balance < 0:
            label, conf = "negative", p_neg
        elif balance > 0:
            label, conf = "positive", 1.0 - p_neg
        else:
            label, conf = "neutral", 0.5
        return Sentiment(label=label, score=round(conf, 4), negative=round(p_neg, 4),
                         model=self.name)

    def score(self, texts: Sequence[str], langs: Sequence[str | None] | None = None
              ) -> list[Sentiment]:
        return [self.score_one(t) for t in texts]


@register("lexicon")
def _make_lexicon() -> Scorer:
    return LexiconScorer()
