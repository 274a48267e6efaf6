"""Brand matching: boolean queries over a post's text, compiled once, per language.

A query is a boolean expression of terms:

* ``word`` — a whole word, case-insensitive (``delay`` matches "Delay!", also "#delay"
  and "@delay", not "delayed"); ``cancel*`` — any word starting with ``cancel``;
* ``"two words"`` — a phrase: these words in this order;
* ``@handle`` / ``#hashtag`` — exactly that handle / hashtag (``@united`` does not match
  ``@unitedcargo``);
* ``/regex/`` — a Python regular expression searched in the text, case-insensitive;
* ``AND``, ``OR``, ``NOT`` (upper case) and parentheses; two terms side by side mean AND.
  ``NOT`` binds tightest, then ``AND``, then ``OR``.

>>> q = compile_query('@united AND (delay* OR "lost bag") AND NOT #ad')
>>> q("@United 3h delayed again"), q("@united lost bag"), q("@united lost my bag #ad")
(True, True, False)
>>> compile_query("@united (delay")
Traceback (most recent call last):
...
stormwatch.nlp.brands.QueryError: expected ')' at position 14, found the end of the query
>>> compile_query("/unit(ed/")
Traceback (most recent call last):
...
stormwatch.nlp.brands.QueryError: bad regex /unit(ed/: missing ), unterminated subpattern at position 4

A :class:`BrandMatcher` holds every brand's query (and a query per language) and
returns the brands a post names, in the order of the config:

>>> m = BrandMatcher([Brand("United", compile_query("@united")),
...                   Brand("American", compile_query("@americanair"),
...                         {"es": compile_query("aerolínea")})])
>>> m.match("@united @AmericanAir thanks"), m.match("la aerolínea", "es"), m.match("hi")
(['United', 'American'], ['American'], [])
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["Brand", "BrandMatcher", "Query", "QueryError", "Text", "compile_query"]

_TOKEN = re.compile(r"[@#]?\w+")
_LEX = re.compile(r'\s*(?:(\()|(\))|"([^"]*)"|/((?:\\.|[^/\\])*)/|([^\s()"]+))')


class Text:
    """A post's text prepared once for every query: lower case, its tokens as a set."""

    __slots__ = ("lower", "raw", "tokens")

    def __init__(self, text: str) -> None:
        self.raw = text
        self.lower = text.lower()
        toks = _TOKEN.findall(self.lower)
        self.tokens = frozenset(toks) | frozenset(t[1:] for t in toks if t[0] in "@#")


Query = Callable[[Text], bool]


class QueryError(ValueError):
    """A query that does not parse; the message says where."""


def _term(word: str) -> Query:
    w = word.lower()
    if w.endswith("*") and len(w) > 1:
        stem = w[:-1]
        if not _TOKEN.fullmatch(stem):
            raise QueryError(f"bad wildcard {word!r}: only a word may end with *")
        return lambda t: any(tok.startswith(stem) for tok in t.tokens)
    if not _TOKEN.fullmatch(w):
        raise QueryError(f"bad term {word!r}: use a word, @handle, #hashtag, \"phrase\" or /regex/")
    return lambda t: w in t.tokens


def _phrase(text: str) -> Query:
    words = _TOKEN.findall(text.lower())
    if not words:
        raise QueryError(f'empty phrase "{text}"')
    rx = re.compile(r"(?<![\w@#])" + r"\W+".join(re.escape(w) for w in words) + r"(?!\w)")
    first = words[0].lstrip("@#")
    return lambda t: first in t.tokens and rx.search(t.lower) is not None


def _regex(pattern: str) -> Query:
    try:
        rx = re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise QueryError(f"bad regex /{pattern}/: {exc}") from None
    return lambda t: rx.search(t.raw) is not None


class _Parser:
    def __init__(self, query: str) -> None:
        self.query = query
        self.toks: list[tuple[str, str, int]] = []  # (kind, value, position)
        pos = 0
        while pos < len(query):
            m = _LEX.match(query, pos)
            if m is None or m.end() == pos:
                if query[pos:].strip() == "":
                    break
                raise QueryError(f"cannot read the query at position {pos}: {query[pos:pos + 20]!r}")
            at = m.start(m.lastindex or 0)
            kind = ["(", ")", "phrase", "regex", "word"][(m.lastindex or 1) - 1]
            self.toks.append((kind, m.group(m.lastindex or 0), at))
            pos = m.end()
        self.i = 0

    def peek(self) -> tuple[str, str, int] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def parse(self) -> Query:
        if not self.toks:
            raise QueryError("empty query")
        q = self.or_()
        tok = self.peek()
        if tok is not None:
            raise QueryError(f"unexpected {tok[1]!r} at position {tok[2]}")
        return q

    def or_(self) -> Query:
        parts = [self.and_()]
        while (tok := self.peek()) is not None and tok[:2] == ("word", "OR"):
            self.i += 1
            parts.append(self.and_())
        return parts[0] if len(parts) == 1 else (lambda t: any(p(t) for p in parts))

    def and_(self) -> Query:
        parts = [self.not_()]
        while (tok := self.peek()) is not None and tok[0] != ")" and tok[:2] != ("word", "OR"):
            if tok[:2] == ("word", "AND"):
                self.i += 1
            parts.append(self.not_())
        return parts[0] if len(parts) == 1 else (lambda t: all(p(t) for p in parts))

    def not_(self) -> Query:
        tok = self.peek()
        if tok is not None and tok[:2] == ("word", "NOT"):
            self.i += 1
            inner = self.not_()
            return lambda t: not inner(t)
        return self.atom()

    def atom(self) -> Query:
        tok = self.peek()
        if tok is None:
            raise QueryError(f"expected a term at position {len(self.query)}, found the end of the query")
        kind, value, at = tok
        self.i += 1
        if kind == "(":
            q = self.or_()
            close = self.peek()
            if close is None or close[0] != ")":
                where = "the end of the query" if close is None else repr(close[1])
                raise QueryError(f"expected ')' at position {close[2] if close else len(self.query)}, "
                                 f"found {where}")
            self.i += 1
            return q
        if kind == ")" or (kind == "word" and value in ("AND", "OR", "NOT")):
            raise QueryError(f"expected a term at position {at}, found {value!r}")
        if kind == "phrase":
            return _phrase(value)
        if kind == "regex":
            return _regex(value)
        return _term(value)


def compile_query(query: str) -> Query:
    """Compile a boolean query into a predicate over :class:`Text` (or a plain string)."""
    q = _Parser(query).parse()

    def run(text: Text | str) -> bool:
        return q(text if isinstance(text, Text) else Text(text))

    return run


@dataclass(frozen=True)
class Brand:
    """A brand's compiled queries: ``query`` for every post, ``by_lang`` for posts in that language
    (either may match), ``exclude`` vetoes."""

    name: str
    query: Query | None
    by_lang: Mapping[str, Query] = field(default_factory=dict)
    exclude: Query | None = None

    def matches(self, text: Text, lang: str | None) -> bool:
        hit = self.query is not None and self.query(text)
        if not hit and lang is not None:
            q = self.by_lang.get(lang.lower())
            hit = q is not None and q(text)
        return hit and not (self.exclude is not None and self.exclude(text))


class BrandMatcher:
    """Every watched brand's queries; :meth:`match` gives the brands a post names."""

    def __init__(self, brands: Sequence[Brand]) -> None:
        self.brands = list(brands)

    def match(self, text: str, lang: str | None = None) -> list[str]:
        t = Text(text)
        return [b.name for b in self.brands if b.matches(t, lang)]
