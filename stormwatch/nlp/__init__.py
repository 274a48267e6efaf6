"""Language processing: sentiment scorers (see :mod:`stormwatch.nlp.base`).

Registered scorers: ``"lexicon"`` (rule-based, no model), ``"e5"`` (the default
transformer scorer, offline), ``"hf"`` (any AutoModelForSequenceClassification).
torch and transformers are imported only when a transformer scorer is built.
"""

from stormwatch.nlp import lexicon, transformer  # noqa: F401  (register the scorers)
from stormwatch.nlp.base import REGISTRY, Scorer, make

__all__ = ["REGISTRY", "Scorer", "make"]
