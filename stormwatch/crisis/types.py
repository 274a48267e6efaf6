"""Crisis types per post, from multilingual keyword rules.

A crisis plan has a strategy per crisis type (outage, security incident, fraud, fees,
statement/PR, service quality); each post is given the type whose rules it matches
most, so an alert can say which kind of storm it is. Rules are lower-case words or
phrases per language (``*`` matches any word ending, ``re:`` starts a raw regular
expression); a post in an unknown language is matched against every language's rules.
The defaults ship as ``crisis_types.yaml`` in this package; the same shape is the
``crisis_types:`` section of a watch config (docs/crisis.md).

>>> c = default_classifier()
>>> c.classify("Die App geht nicht, schon wieder eine Störung", "de")
'outage'
>>> c.classify("@bank my account was hacked and my data leaked", "en")
'security'
>>> c.classify("Schon wieder Gebühren erhöht, Abzocke!", None)
'fees'
>>> c.classify("lovely weather today", "en") is None
True
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

#: The language key whose rules hold in every language.
ANY_LANG = "any"
_ID = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
#: Most rules one type may have per language (keeps matching fast and configs sane).
MAX_RULES = 200


class CrisisConfigError(ValueError):
    """A crisis-type or playbook configuration that cannot be used; the message says where."""


def normalise(text: str) -> str:
    """Lower-case, NFC, typographic apostrophes as ``'``: what the rules are matched on.

    >>> normalise("Can’t LOG in — STÖRUNG")
    "can't log in — störung"
    """
    return unicodedata.normalize("NFC", text).replace("’", "'").replace("‘", "'").lower()


def compile_rule(rule: str) -> re.Pattern[str]:
    """One rule as a regular expression on :func:`normalise` d text.

    >>> bool(compile_rule("störung*").search("heute störungen bei der app"))
    True
    >>> bool(compile_rule("app geht nicht").search("die app...geht nicht!"))
    True
    >>> bool(compile_rule("fee").search("coffee"))
    False
    """
    try:
        return re.compile(rf"(?<!\w)(?:{_body(rule)})(?!\w)")
    except re.error as exc:
        raise CrisisConfigError(f"rule {rule!r} is not a valid pattern: {exc}") from None


def _body(rule: str) -> str:
    if not isinstance(rule, str) or not rule.strip():
        raise CrisisConfigError(f"a rule must be a non-empty string, got {rule!r}")
    if rule.startswith("re:"):
        return rule[3:]
    words = normalise(rule).split()
    return r"[\W_]+".join(r"\w*".join(re.escape(part) for part in w.split("*")) for w in words)


@dataclass(frozen=True)
class CrisisType:
    """One crisis type: id (also its playbook's id), label, compiled rules per language."""

    id: str
    label: str
    rules: Mapping[str, tuple[str, ...]]
    patterns: Mapping[str, tuple[re.Pattern[str], ...]]
    #: all of a language's rules in one pattern: most posts match none, found in one search
    any_of: Mapping[str, re.Pattern[str]]

    def hits(self, text: str, lang: str | None) -> int:
        """How many of this type's rules match the normalised ``text``."""
        langs: Iterable[str] = (ANY_LANG, lang) if lang in self.patterns else self.patterns
        seen = 0
        for key in dict.fromkeys(langs):
            combined = self.any_of.get(key)
            if combined is not None and combined.search(text):
                seen += sum(1 for p in self.patterns[key] if p.search(text))
        return seen


class CrisisClassifier:
    """Gives a post the crisis type with the most rule hits (ties: the type listed first)."""

    def __init__(self, types: Sequence[CrisisType]) -> None:
        self.types = tuple(types)

    @property
    def ids(self) -> list[str]:
        return [t.id for t in self.types]

    def classify(self, text: str, lang: str | None = None) -> str | None:
        """The post's crisis type id, or None when no rule matches."""
        norm = normalise(text)
        best, best_hits = None, 0
        for t in self.types:
            hits = t.hits(norm, lang)
            if hits > best_hits:
                best, best_hits = t.id, hits
        return best

    def classify_many(self, texts: Sequence[str], langs: Sequence[str | None]) -> list[str | None]:
        return [self.classify(t, lg) for t, lg in zip(texts, langs, strict=True)]


def parse_types(data: Any, where: str = "crisis_types") -> list[CrisisType]:
    """Validate the ``crisis_types:`` list (already parsed YAML) and compile its rules.

    >>> parse_types([{"id": "outage", "label": "Outage", "rules": {"en": ["down"]}}])[0].id
    'outage'
    >>> parse_types([{"id": "Outage!", "rules": {"en": ["down"]}}])
    Traceback (most recent call last):
    ...
    stormwatch.crisis.types.CrisisConfigError: crisis_types[0].id: 'Outage!' must be lower-case ...
    """
    if not isinstance(data, list) or not data:
        raise CrisisConfigError(f"{where}: expected a non-empty list of crisis types")
    out: list[CrisisType] = []
    seen: set[str] = set()
    for i, item in enumerate(data):
        at = f"{where}[{i}]"
        if not isinstance(item, dict):
            raise CrisisConfigError(f"{at}: expected a mapping with id, label, rules")
        unknown = sorted(set(item) - {"id", "label", "rules"})
        if unknown:
            raise CrisisConfigError(f"{at}: unknown key(s) {', '.join(unknown)}")
        tid = item.get("id")
        if not isinstance(tid, str) or not _ID.match(tid):
            raise CrisisConfigError(f"{at}.id: {tid!r} must be lower-case letters, digits, - or _")
        if tid in seen:
            raise CrisisConfigError(f"{at}.id: {tid!r} is listed twice")
        seen.add(tid)
        rules = item.get("rules")
        if not isinstance(rules, dict) or not rules:
            raise CrisisConfigError(f"{at}.rules: expected a mapping of language → list of rules")
        clean: dict[str, tuple[str, ...]] = {}
        for lang, items in rules.items():
            if not isinstance(lang, str) or not (lang == ANY_LANG or re.fullmatch(r"[a-z]{2,3}", lang)):
                raise CrisisConfigError(f"{at}.rules: {lang!r} is not a language code or 'any'")
            if not isinstance(items, list) or not items or len(items) > MAX_RULES:
                raise CrisisConfigError(f"{at}.rules.{lang}: expected a list of 1..{MAX_RULES} rules")
            clean[lang] = tuple(str(r) if isinstance(r, int | float) else r for r in items)
        patterns: dict[str, tuple[re.Pattern[str], ...]] = {}
        for lang, items in clean.items():
            try:
                patterns[lang] = tuple(compile_rule(r) for r in items)
            except CrisisConfigError as exc:
                raise CrisisConfigError(f"{at}.rules.{lang}: {exc}") from None
        label = item.get("label", tid)
        if not isinstance(label, str):
            raise CrisisConfigError(f"{at}.label: expected a string")
        any_of = {lang: re.compile(r"(?<!\w)(?:" + "|".join(f"(?:{_body(r)})" for r in rules_) + r")(?!\w)")
                  for lang, rules_ in clean.items()}
        out.append(CrisisType(tid, label, clean, patterns, any_of))
    return out


def load_yaml(path: str | Path | None, package_file: str) -> Any:
    """Parse a YAML file (or the package's default ``package_file``) with clear errors."""
    if path is None:
        text = resources.files("stormwatch.crisis").joinpath(package_file).read_text(encoding="utf-8")
        where = f"stormwatch/crisis/{package_file}"
    else:
        where = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise CrisisConfigError(f"{where}: cannot read: {exc.strerror}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CrisisConfigError(f"{where}: not valid YAML: {exc}") from None


def load_types(path: str | Path | None = None) -> list[CrisisType]:
    """Crisis types from a YAML file with a ``crisis_types:`` list (default: the package's)."""
    data = load_yaml(path, "crisis_types.yaml")
    if not isinstance(data, dict) or "crisis_types" not in data:
        raise CrisisConfigError(f"{path or 'crisis_types.yaml'}: expected a top-level 'crisis_types:' list")
    return parse_types(data["crisis_types"])


@lru_cache(maxsize=1)
def default_classifier() -> CrisisClassifier:
    """The classifier over the package's default crisis types (built once)."""
    return CrisisClassifier(load_types())
