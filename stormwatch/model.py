"""The records that travel on the topics, and the one parser that validates posts.

Every stage (the replay connector, the Faust worker, the local runner) turns raw input
into a :class:`Post` through :func:`parse_post`, so a line is accepted or rejected
for the same reason everywhere.

>>> post = parse_post('{"id": "1", "created_at": "2015-02-23T01:02:03Z", '
...                   '"channel": "twitter", "brand": "American", "text": "no wifi again"}')
>>> post.brand, post.created_at.isoformat()
('American', '2015-02-23T01:02:03+00:00')
>>> parse_post('{"id": "1"}')
Traceback (most recent call last):
...
stormwatch.model.InvalidRecord: missing_field: 'created_at' is required
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import math
import re
import sys
import time
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

#: Longest accepted post text, in characters. Longer texts are rejected, not cut:
#: a connector that produces them is broken and should be told so.
MAX_TEXT_CHARS = 20_000
#: Longest accepted raw record, in bytes (checked before JSON parsing).
MAX_RECORD_BYTES = 256 * 1024
#: Oldest accepted event time: nothing social-media-like predates it.
MIN_EVENT_TIME = datetime(2000, 1, 1, tzinfo=UTC)
#: How far into the future (seconds, against the wall clock) an event may lie.
MAX_CLOCK_SKEW_S = 24 * 3600

SENTIMENTS = ("negative", "neutral", "positive")
#: Every reason code :func:`parse_post` gives a rejected record.
REASONS = frozenset({"too_large", "bad_encoding", "malformed_json", "not_an_object", "missing_field",
                     "wrong_type", "empty_text", "text_too_long", "bad_timestamp", "bad_value"})
ALL_CHANNELS = "*"


class InvalidRecord(ValueError):
    """A record that cannot enter the pipeline; ``reason`` is a short stable code.

    >>> InvalidRecord("empty_text", "text is empty").reason
    'empty_text'
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _utc(value: Any, name: str) -> datetime:
    """Parse an ISO-8601 timestamp or epoch seconds into an aware UTC datetime."""
    if isinstance(value, bool):
        raise InvalidRecord("wrong_type", f"{name!r} must be an ISO-8601 string or epoch seconds")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise InvalidRecord("bad_timestamp", f"{name!r} is not a finite number")
        try:
            dt = datetime.fromtimestamp(float(value), tz=UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise InvalidRecord("bad_timestamp", f"{name!r} out of range: {value!r}") from exc
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(text)
        except ValueError as exc:
            raise InvalidRecord("bad_timestamp", f"{name!r} is not ISO-8601: {value[:40]!r}") from exc
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)  # naive timestamps are taken as UTC
        dt = dt.astimezone(UTC)
    else:
        raise InvalidRecord("wrong_type", f"{name!r} must be an ISO-8601 string or epoch seconds")
    # Whole seconds, as the records are written: a post must read back as itself.
    return dt.replace(microsecond=0)


def check_event_time(dt: datetime, now: float | None = None) -> datetime:
    """Reject event times that cannot be real: before 2000 or over a day ahead.

    >>> check_event_time(datetime(1999, 12, 31, tzinfo=UTC))
    Traceback (most recent call last):
    ...
    stormwatch.model.InvalidRecord: bad_timestamp: 1999-12-31T00:00:00+00:00 is before 2000-01-01
    """
    if dt < MIN_EVENT_TIME:
        raise InvalidRecord("bad_timestamp", f"{dt.isoformat()} is before 2000-01-01")
    now = time.time() if now is None else now
    if dt.timestamp() > now + MAX_CLOCK_SKEW_S:
        raise InvalidRecord("bad_timestamp", f"{dt.isoformat()} lies more than a day in the future")
    return dt


#: Longest accepted language tag (BCP 47 tags in practice stay far below).
MAX_LANG_CHARS = 35


def _unpaired_surrogate(value: str) -> str | None:
    """The first lone UTF-16 surrogate in ``value`` (an escaped one in JSON decodes to it), if any.

    Such a string cannot be written as UTF-8, so it would break every stage downstream.

    >>> _unpaired_surrogate("ok \U0001F600"), _unpaired_surrogate("bad " + chr(0xD800))
    (None, 'U+D800')
    """
    for ch in value:
        if 0xD800 <= ord(ch) <= 0xDFFF:
            return f"U+{ord(ch):04X}"
    return None


def _control_or_format(value: str) -> str | None:
    """The first control or format character (NUL, newline, zero-width, bidi override), if any.

    Identifiers (id, brand, channel, lang) must not hide text: a brand written with a
    right-to-left override or a zero-width space would look like another brand on a
    dashboard and split its series.

    >>> _control_or_format("US Airways"), _control_or_format("Uni\u202eted")
    (None, 'U+202E')
    """
    for ch in value:
        if unicodedata.category(ch) in ("Cc", "Cf"):
            return f"U+{ord(ch):04X}"
    return None


def _text_field(data: Mapping[str, Any], name: str, required: bool = True) -> str | None:
    value = data.get(name)
    if value is None:
        if required:
            raise InvalidRecord("missing_field", f"{name!r} is required")
        return None
    if not isinstance(value, str):
        raise InvalidRecord("wrong_type", f"{name!r} must be a string, got {type(value).__name__}")
    bad = _unpaired_surrogate(value)
    if bad:
        raise InvalidRecord("bad_encoding", f"{name!r} contains an unpaired surrogate ({bad})")
    return value


def _int_field(data: Mapping[str, Any], name: str) -> int:
    value = data.get(name, 0)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRecord("wrong_type", f"{name!r} must be an integer, got {type(value).__name__}")
    if value < 0:
        raise InvalidRecord("bad_value", f"{name!r} must not be negative")
    return value


@dataclass(frozen=True, slots=True)
class Post:
    """One social post, as it travels on ``posts.raw``.

    ``author`` is never a raw handle inside Kafka: connectors pass it through
    :func:`hash_author` first.
    """

    id: str
    created_at: datetime
    channel: str
    brand: str
    text: str
    lang: str | None = None
    author: str | None = None
    retweets: int = 0

    @property
    def ts(self) -> float:
        """Event time as epoch seconds."""
        return self.created_at.timestamp()

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["created_at"] = _iso(self.created_at)
        return d


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def json_error(exc: ValueError | RecursionError) -> str:
    """What is wrong with a text ``json.loads`` refused, in words (every way it can refuse).

    >>> try:
    ...     json.loads("1" * 5000)
    ... except ValueError as exc:
    ...     json_error(exc)
    'a number has more than 4300 digits'
    """
    if isinstance(exc, json.JSONDecodeError):
        return exc.msg
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if "digits" in str(exc):
        return f"a number has more than {sys.get_int_max_str_digits()} digits"
    return str(exc) or type(exc).__name__


def loads_object(raw: bytes | str | Mapping[str, Any]) -> Mapping[str, Any]:
    """Decode one raw record into a JSON object, with the size check first."""
    if isinstance(raw, Mapping):
        return raw
    if isinstance(raw, bytes | bytearray | memoryview):
        raw = bytes(raw)
        if len(raw) > MAX_RECORD_BYTES:
            raise InvalidRecord("too_large", f"record is {len(raw)} bytes, limit {MAX_RECORD_BYTES}")
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidRecord("bad_encoding", f"record is not UTF-8 ({exc.reason})") from exc
    elif len(raw) > MAX_RECORD_BYTES:
        raise InvalidRecord("too_large", f"record is {len(raw)} characters, limit {MAX_RECORD_BYTES}")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # ValueError: also an integer of > 4300 digits
        raise InvalidRecord("malformed_json", json_error(exc)) from exc
    if not isinstance(data, dict):
        raise InvalidRecord("not_an_object", f"expected a JSON object, got {type(data).__name__}")
    return data


def parse_post(raw: bytes | str | Mapping[str, Any], now: float | None = None) -> Post:
    """Validate one raw post (JSON bytes/str or an already decoded mapping).

    Raises :class:`InvalidRecord` with a stable reason code: ``too_large``,
    ``bad_encoding``, ``malformed_json``, ``not_an_object``, ``missing_field``,
    ``wrong_type``, ``empty_text``, ``text_too_long``, ``bad_timestamp``, ``bad_value``.
    Unknown fields (labels, for instance) are ignored. The text keeps format characters
    (zero-width joiners build emoji, right-to-left marks are real writing), but no NUL
    and no unpaired surrogate; identifiers allow neither control nor format characters.

    >>> parse_post({"id": "7", "created_at": 1424653323, "channel": "twitter",
    ...             "brand": "United", "text": "  "})
    Traceback (most recent call last):
    ...
    stormwatch.model.InvalidRecord: empty_text: 'text' is empty
    """
    data = loads_object(raw)
    post_id = _text_field(data, "id")
    if "created_at" not in data or data["created_at"] is None:
        raise InvalidRecord("missing_field", "'created_at' is required")
    created = check_event_time(_utc(data["created_at"], "created_at"), now)
    channel = _text_field(data, "channel")
    brand = _text_field(data, "brand")
    text = _text_field(data, "text")
    assert post_id is not None and channel is not None and brand is not None and text is not None
    lang = _text_field(data, "lang", required=False)
    for name, value in (("id", post_id), ("channel", channel), ("brand", brand)):
        if not value.strip():
            raise InvalidRecord("bad_value", f"{name!r} is empty")
        if len(value) > 200:
            raise InvalidRecord("bad_value", f"{name!r} is longer than 200 characters")
    for name, value in (("id", post_id), ("channel", channel), ("brand", brand), ("lang", lang or "")):
        bad = _control_or_format(value)
        if bad:
            raise InvalidRecord("bad_value", f"{name!r} contains a control or format character ({bad})")
    if lang is not None and len(lang) > MAX_LANG_CHARS:
        raise InvalidRecord("bad_value", f"'lang' is longer than {MAX_LANG_CHARS} characters")
    if not text.strip():
        raise InvalidRecord("empty_text", "'text' is empty")
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidRecord("text_too_long", f"'text' has {len(text)} characters, limit {MAX_TEXT_CHARS}")
    if "\x00" in text:
        raise InvalidRecord("bad_value", "'text' contains a NUL character")
    retweets = _int_field(data, "retweets")
    return Post(
        id=post_id,
        created_at=created,
        channel=channel.strip().lower(),
        brand=brand.strip(),
        text=text,
        lang=lang,
        author=_text_field(data, "author", required=False),
        retweets=retweets,
    )


def hash_author(author: str, salt: bytes) -> str:
    """Pseudonymise an author id with a keyed hash (HMAC-SHA256, 16 hex chars).

    >>> hash_author("@someone", b"salt") == hash_author("@someone", b"salt")
    True
    >>> hash_author("@someone", b"salt") == hash_author("@someone", b"pepper")
    False
    """
    return hmac.new(salt, author.encode("utf-8"), hashlib.sha256).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Sentiment:
    """A scorer's verdict on one post. ``negative`` is P(negative), used for shares."""

    label: str
    score: float
    negative: float
    model: str


@dataclass(frozen=True, slots=True)
class ScoredPost:
    """A post after enrichment, as it travels on ``posts.scored`` (keyed by brand).

    ``source_offset`` is the offset of the raw record it was made from on ``posts.raw``
    (same partition number), so that a stage downstream can tell a copy the enrich
    step sent again after a restart from a new post (see :mod:`stormwatch.positions`).
    """

    post: Post
    sentiment: Sentiment
    lang: str | None = None
    source_offset: int | None = None
    crisis: str | None = None  # crisis type id (stormwatch.crisis.types), None: no rule matched

    def to_dict(self) -> dict[str, Any]:
        return {"post": self.post.to_dict(), "sentiment": dataclasses.asdict(self.sentiment),
                "lang": self.lang, "source_offset": self.source_offset, "crisis": self.crisis}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ScoredPost:
        return cls(post=parse_post(d["post"], now=float("inf")),
                   sentiment=Sentiment(**d["sentiment"]), lang=d.get("lang"),
                   source_offset=d.get("source_offset"), crisis=d.get("crisis"))


def series_key(brand: str, channel: str = ALL_CHANNELS) -> str:
    """The name of one watched series: a brand on one channel, or on all (``*``).

    >>> series_key("US Airways", "twitter"), series_key("US Airways")
    ('US Airways/twitter', 'US Airways/*')
    """
    return f"{brand}/{channel}"


@dataclass(frozen=True, slots=True)
class SeriesStats:
    """One closed event-time bucket of one series, as it travels on ``stats``.

    ``late`` counts posts that arrived after their bucket had closed and were
    therefore not counted in it (reported with the next bucket that closes).
    ``samples`` holds up to three of the bucket's most negative posts (id, text);
    ``negative_posts`` the same posts as (id, channel, P(negative), text). The evidence
    for alerts: ``crisis`` counts posts
    per crisis type, ``langs`` posts per language (``und``: unknown), ``terms`` the
    bucket's most frequent terms per language (lang, term, posts), ``reached`` its most
    retweeted posts (id, channel, retweets, text). All sorted, so records compare equal.
    """

    brand: str
    channel: str
    bucket_start: datetime
    bucket_seconds: int
    count: int
    negative: int = 0
    neutral: int = 0
    positive: int = 0
    negative_score_sum: float = 0.0
    retweets: int = 0
    late: int = 0
    samples: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    negative_posts: tuple[tuple[str, str, float, str], ...] = field(default_factory=tuple)
    crisis: tuple[tuple[str, int], ...] = field(default_factory=tuple)
    langs: tuple[tuple[str, int], ...] = field(default_factory=tuple)
    terms: tuple[tuple[str, str, int], ...] = field(default_factory=tuple)
    reached: tuple[tuple[str, str, int, str], ...] = field(default_factory=tuple)

    @property
    def series(self) -> str:
        return series_key(self.brand, self.channel)

    @property
    def negative_share(self) -> float | None:
        return self.negative / self.count if self.count else None

    def to_dict(self) -> dict[str, Any]:
        # Field by field, not dataclasses.asdict (which deep-copies every row): a replay
        # writes eight of these per post.
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["bucket_start"] = _iso(self.bucket_start)
        for name in _STATS_ROWS:
            d[name] = [list(s) for s in d[name]]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SeriesStats:
        d = dict(d)
        d["bucket_start"] = _utc(d["bucket_start"], "bucket_start")
        for name in _STATS_ROWS:
            d[name] = tuple(tuple(s) for s in d.get(name, ()))
        return cls(**d)


_STATS_ROWS = ("samples", "negative_posts", "crisis", "langs", "terms", "reached")


@dataclass(frozen=True, slots=True)
class Alert:
    """One state change of one incident, as it travels on ``alerts`` (keyed by ``id``).

    The id is stable (series + first anomalous bucket), so a replay, a retry or a
    rebalance produces the same id and never a second incident.
    """

    id: str
    event: str  # open | escalate | resolve
    brand: str
    channel: str
    severity: str  # warning | critical
    started_at: datetime
    at: datetime
    observed: float
    expected: float
    lower: float
    upper: float
    score: float
    detector: str
    threshold: float
    negative_share: float | None = None
    samples: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    #: dominant crisis type of the recent posts (None: no rule matched), its share of them,
    #: and the playbook for it (stormwatch.crisis.playbooks)
    crisis_type: str | None = None
    crisis_share: float | None = None
    playbook: str | None = None
    #: JSON-able, bounded: window, reach, languages, crisis mix, burst terms, top posts
    evidence: dict[str, Any] = field(default_factory=dict)
    kind: str = "volume"  # volume | emerging (a new term cluster bursts before the volume)
    #: escalation level (0: first responders) and who acknowledged/resolved ("" = the system);
    #: set by the escalation state machine (stormwatch.crisis.escalation)
    level: int = 0
    by: str = ""
    config_version: str | None = None  # the watch config's version the alert was raised under

    @property
    def series(self) -> str:
        return series_key(self.brand, self.channel)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["started_at"] = _iso(self.started_at)
        d["at"] = _iso(self.at)
        d["samples"] = [list(s) for s in self.samples]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Alert:
        d = dict(d)
        d["started_at"] = _utc(d["started_at"], "started_at")
        d["at"] = _utc(d["at"], "at")
        d["samples"] = tuple(tuple(s) for s in d.get("samples", ()))
        return cls(**d)


def alert_id(series: str, started_at: datetime) -> str:
    """Stable incident id: the series and its first anomalous bucket.

    >>> alert_id("American/*", datetime(2015, 2, 23, 1, 0, tzinfo=UTC))
    'American/*@2015-02-23T01:00Z'
    """
    return f"{series}@{started_at.astimezone(UTC).strftime('%Y-%m-%dT%H:%MZ')}"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that could not be processed, as it travels on ``posts.dlq``."""

    stage: str
    reason: str
    error: str
    raw: str
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def dumps(record: Any) -> bytes:
    """Serialise a record (anything with ``to_dict``) to compact JSON bytes."""
    return json.dumps(record.to_dict(), ensure_ascii=False, separators=(",", ":")).encode("utf-8")


#: An ``"author": "..."`` member in JSON text, also inside a record that does not parse.
_AUTHOR_MEMBER = re.compile(r'("author"\s*:\s*)"(?:[^"\\]|\\.)*"')
REDACTED = "<redacted>"


def raw_text(raw: Any, limit: int | None = None) -> str:
    """Render a raw input for a dead letter, as text (invalid UTF-8 escaped), author redacted.

    A dead letter keeps the rejected input for whoever debugs it, but never an author
    handle: those enter Kafka only hashed, and a rejected record has not been hashed.

    >>> raw_text(b'{"id": 1, "author": "@alice", "text": "broken')
    '{"id": 1, "author": "<redacted>", "text": "broken'
    >>> raw_text({"author": "@bob", "text": "x"})
    '{"author": "<redacted>", "text": "x"}'
    >>> raw_text([{"author": "@carol"}, 3])
    '[{"author": "<redacted>"}, 3]'
    """
    if isinstance(raw, Mapping):
        if isinstance(raw.get("author"), str):
            raw = {**raw, "author": REDACTED}
        text = json.dumps(raw, ensure_ascii=False, default=str)
    elif isinstance(raw, bytes | bytearray | memoryview):
        text = bytes(raw).decode("utf-8", errors="backslashreplace")
    elif isinstance(raw, str):
        text = raw
    else:  # any other JSON value (a list, a number) that arrived where a post was expected
        text = json.dumps(raw, ensure_ascii=False, default=str)
    text = _AUTHOR_MEMBER.sub(lambda m: m.group(1) + f'"{REDACTED}"', text)
    if limit is not None and len(text) > limit:
        text = text[:limit]
    return writable(text)


def writable(text: str) -> str:
    """``text`` with lone surrogates (a JSON ``"\\ud83d"`` decodes to one) written as ``\\udXXX``,
    so that it encodes as UTF-8: a dead letter must be writable whatever it quotes.

    >>> writable("half " + chr(0xD83D) + " emoji")
    'half \\\\ud83d emoji'
    """
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
