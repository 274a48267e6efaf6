"""Language processing: sentiment scorers (see :mod:`stormwatch.nlp.base`)."""

from stormwatch.nlp import lexicon  # noqa: F401  (registers the "lexicon" scorer)
from stormwatch.nlp.base import REGISTRY, Scorer, make

__all__ = ["REGISTRY", "Scorer", "make"]
