"""The watch config: which brands to listen for, and how sensitive each series' alerts are.

One YAML file (``STORMWATCH_WATCH``; ``deploy/watch.example.yaml``), validated when it is
loaded; every error names the file, the line and the field::

    watch.yaml:12: brands.United.threshold: must be between 0 and 1, got -0.2

Top-level sections (any other is an error, so a typo never silently does nothing):

* ``version`` — the schema version, ``1``;
* ``defaults`` — detection settings for every series (a *detect block*, below);
* ``channels`` — the channels listened to, each with an optional detect block; posts on
  other channels are counted as unmatched (empty or absent: every channel);
* ``brands`` — name → queries (``handles``, ``hashtags``, ``keywords``, ``query``: a boolean
  expression, see :mod:`stormwatch.nlp.brands`; ``exclude``; ``lang``: the same per
  language), ``team``, a detect block, and ``channels``: channel → detect block;
* ``routing`` — ``receivers`` (name → ``{type: ..., ...}``), ``teams`` (name → severity →
  receiver names) and ``default_team``.

* ``crisis_types`` and ``playbooks`` — the crisis-type rules and the playbooks, in the
  shape of the package's ``crisis_types.yaml`` and ``playbooks.yaml``
  (:mod:`stormwatch.crisis`; every type needs a playbook); absent: the package's.

More sections can be registered by other modules (:func:`register_section`).

A detect block: ``preset`` (``fewer``, ``balanced``, ``more``: :data:`PRESETS`) and explicit
overrides ``threshold``, ``critical`` (detector score, 0..1), ``min_volume`` (posts in the
bucket), ``cooldown``, ``persist`` (how long the score must stay above the threshold) and
``warmup`` (durations with a unit: ``90s``, ``30m``, ``2h``, ``1d``). For one series the
most specific preset named wins (brand × channel, brand, channel, defaults), then the
explicit overrides apply from the least to the most specific.

>>> cfg = parse_watch('''
... defaults: {preset: balanced}
... brands:
...   United:
...     handles: ["@united"]
...     channels: {twitter: {preset: fewer, cooldown: 2h}}
... ''', "w.yaml")
>>> cfg.matcher().match("@united my bag is lost")
['United']
>>> p = cfg.policy("United", "twitter", 60)
>>> p.threshold, p.cooldown, p.min_volume, cfg.policy("United", "*", 60).threshold
(0.95, 120, 5.0, 0.85)
>>> parse_watch("brands:\\n  United:\\n    handle: ['@united']\\n", "w.yaml")
Traceback (most recent call last):
...
stormwatch.watch.WatchConfigError: w.yaml:3: brands.United.handle: unknown field; known: channels, ...
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from stormwatch.detectors.policy import PolicyConfig
from stormwatch.nlp.brands import Brand, BrandMatcher, QueryError, compile_query

__all__ = ["PRESETS", "Detect", "WatchConfig", "WatchConfigError", "WatchFile", "load_watch",
           "parse_watch", "register_section"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Detect:
    """Resolved detection settings of one series (durations in seconds)."""

    preset: str
    threshold: float
    critical: float
    min_volume: float
    cooldown: float
    persist: float
    warmup: float | None = None  # None: the detector's own warm-up

    def policy(self, bucket_seconds: int, base: PolicyConfig | None = None) -> PolicyConfig:
        """The :class:`PolicyConfig` these settings mean for buckets of ``bucket_seconds``."""
        base = base or PolicyConfig()
        return dataclasses.replace(
            base, threshold=self.threshold, critical=max(self.critical, self.threshold),
            clear=min(base.clear, self.threshold), min_volume=self.min_volume,
            cooldown=round(self.cooldown / bucket_seconds),
            persist=max(1, round(self.persist / bucket_seconds)))

    def detector_params(self, bucket_seconds: int, base: Mapping[str, Any]) -> dict[str, Any]:
        """``base`` detector parameters with this warm-up (in observations), if one is set."""
        out = dict(base)
        if self.warmup is not None:
            out["warmup"] = round(self.warmup / bucket_seconds)
        return out


#: Sensitivity presets, as in commercial listening tools; ``balanced`` is the product default
#: (the same alert policy as without a watch config at 1-minute buckets).
PRESETS: dict[str, Detect] = {
    "fewer": Detect("fewer", threshold=0.95, critical=0.998, min_volume=5.0, cooldown=3 * 3600.0,
                    persist=180.0),
    "balanced": Detect("balanced", threshold=0.85, critical=0.995, min_volume=0.0, cooldown=3600.0,
                       persist=0.0),
    "more": Detect("more", threshold=0.7, critical=0.99, min_volume=0.0, cooldown=1800.0, persist=0.0),
}

DETECT_FIELDS = ("preset", "threshold", "critical", "min_volume", "cooldown", "persist", "warmup")
QUERY_FIELDS = ("handles", "hashtags", "keywords", "query")
BRAND_FIELDS = (*QUERY_FIELDS, "exclude", "lang", "team", "channels", *DETECT_FIELDS)
SEVERITIES = ("warning", "critical")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")
_UNIT = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
MAX_DURATION = 10 * 365 * 86400.0

Path_ = tuple[str, ...]


class WatchConfigError(ValueError):
    """A watch config that cannot be used: ``file:line: field: what is wrong``."""


#: Largest watch config read (bytes): a few thousand brands fit; a bigger file is an error.
MAX_WATCH_BYTES = 1024 * 1024
#: Deepest nesting of YAML collections (a real config needs about six levels).
MAX_DEPTH = 64
#: Most values read, counting every use of an alias (a "billion laughs" stops here).
MAX_NODES = 200_000


#: The largest integer a watch config may hold (bits).
MAX_INT_BITS = 64


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` with bounds: nesting depth and merge-key (``<<``) expansion."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._merged = 0
        self._merging: set[int] = set()

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        if self._depth >= MAX_DEPTH:
            raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels",
                                              self.peek_event().start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def flatten_mapping(self, node: MappingNode) -> None:
        if id(node) in self._merging:
            raise yaml.constructor.ConstructorError(None, None, "a merge key (<<) includes its own mapping",
                                                    node.start_mark)
        self._merging.add(id(node))
        try:
            super().flatten_mapping(node)
        finally:
            self._merging.discard(id(node))
        self._merged += len(node.value)
        if self._merged > MAX_NODES:
            raise yaml.constructor.ConstructorError(
                None, None, f"merge keys (<<) expand to more than {MAX_NODES} fields", node.start_mark)


@dataclass
class _Doc:
    """The parsed YAML with the line of every field, to name it in errors."""

    name: str
    lines: dict[Path_, int] = field(default_factory=dict)
    nodes: int = 0

    def error(self, path: Path_, message: str) -> WatchConfigError:
        p = path
        while p and p not in self.lines:
            p = p[:-1]
        line = self.lines.get(p, 1)
        where = ".".join(map(_field, path)) if path else "(top level)"
        return WatchConfigError(f"{self.name}:{line}: {where}: {message}")

    def plain(self, node: Node, path: Path_, loader: yaml.SafeLoader) -> Any:
        self.lines.setdefault(path, node.start_mark.line + 1)
        self.nodes += 1
        if self.nodes > MAX_NODES:  # aliases re-use what they name: count every use
            raise self.error(path, f"more than {MAX_NODES} values (aliases expanding?)")
        if len(path) > MAX_DEPTH:  # through aliases: a recursive one never ends
            raise self.error(path, f"nested deeper than {MAX_DEPTH} levels (a recursive alias?)")
        if isinstance(node, MappingNode):
            loader.flatten_mapping(node)
            out: dict[str, Any] = {}
            for k, v in node.value:
                key = str(self.scalar(k, path, loader))
                if key in out:
                    self.lines[(*path, key)] = k.start_mark.line + 1
                    raise self.error((*path, key), "given twice")
                self.lines[(*path, key)] = k.start_mark.line + 1
                out[key] = self.plain(v, (*path, key), loader)
            return out
        if isinstance(node, SequenceNode):
            return [self.plain(v, (*path, str(i)), loader) for i, v in enumerate(node.value)]
        assert isinstance(node, ScalarNode)
        return self.scalar(node, path, loader)

    def scalar(self, node: Node, path: Path_, loader: yaml.SafeLoader) -> Any:
        """A key or scalar value; one YAML reads but Python cannot build is an error here."""
        value = node.value if isinstance(node.value, str) else "?"
        try:
            out = loader.construct_object(node, deep=True)
        except (ValueError, OverflowError) as exc:  # 2026-02-30, an integer of > 4300 digits
            self.lines.setdefault(path, node.start_mark.line + 1)
            raise self.error(path, f"cannot read {value[:40]!r}: {exc}") from None
        # No setting needs a number this large, and Python cannot print one of more than
        # 4,300 digits (a hexadecimal one reads fine): refuse it here, with its line.
        if isinstance(out, int) and out.bit_length() > MAX_INT_BITS:
            self.lines.setdefault(path, node.start_mark.line + 1)
            raise self.error(path, f"cannot read {value[:40]!r}: a number over {MAX_INT_BITS} bits")
        return out


#: Extra top-level sections: name → parser(value, doc, path) returning the section's object.
SECTIONS: dict[str, Callable[[Any, _Doc, Path_], Any]] = {}


def register_section(name: str, parser: Callable[[Any, _Doc, Path_], Any]) -> None:
    """Let another module own a top-level section (crisis types, playbooks, ...).

    The parser gets the plain value, the document (``doc.error(path, msg)`` builds an
    error naming the line) and its path; what it returns is in ``WatchConfig.sections``.
    """
    SECTIONS[name] = parser


@dataclass(frozen=True)
class _Overrides:
    """One level's detect block: the preset it names and its explicit values."""

    preset: str | None = None
    values: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class BrandConfig:
    name: str
    brand: Brand
    team: str | None
    detect: _Overrides
    channels: Mapping[str, _Overrides]


@dataclass(frozen=True)
class WatchConfig:
    """A validated watch config. ``version`` is the hash of the file's bytes."""

    source: str
    version: str
    brands: Mapping[str, BrandConfig]
    defaults: _Overrides
    channels: Mapping[str, _Overrides]
    receivers: Mapping[str, Mapping[str, Any]]
    teams: Mapping[str, Mapping[str, tuple[str, ...]]]
    default_team: str | None
    sections: Mapping[str, Any] = field(default_factory=dict)

    def matcher(self) -> BrandMatcher:
        """The brand matcher the enrich step uses (brands in file order)."""
        return BrandMatcher([b.brand for b in self.brands.values()])

    def watches_channel(self, channel: str) -> bool:
        return not self.channels or channel in self.channels

    def detect(self, brand: str, channel: str) -> Detect:
        """The settings of series ``brand/channel`` (``*``: the brand over all channels)."""
        b = self.brands.get(brand)
        levels = [self.defaults]
        if channel != "*" and channel in self.channels:
            levels.append(self.channels[channel])
        if b is not None:
            levels.append(b.detect)
            if channel in b.channels:
                levels.append(b.channels[channel])
        preset = next((lv.preset for lv in reversed(levels) if lv.preset), "balanced")
        values: dict[str, float] = {}
        for lv in levels:
            values.update(lv.values)
        return dataclasses.replace(PRESETS[preset], **values)

    def policy(self, brand: str, channel: str, bucket_seconds: int,
               base: PolicyConfig | None = None) -> PolicyConfig:
        return self.detect(brand, channel).policy(bucket_seconds, base)

    def receivers_for(self, brand: str, severity: str) -> list[str]:
        """Receiver names for an alert of ``brand`` at ``severity`` (its team, else the default)."""
        b = self.brands.get(brand)
        team = (b.team if b is not None else None) or self.default_team
        return list(self.teams.get(team, {}).get(severity, ())) if team else []


def _field(key: str) -> str:
    """A key as an error message's field path shows it: as written when it reads as a
    name (``US Airways``), quoted when it could be misread (spaces at an end, a dot, a
    control or invisible character, empty, very long).

    >>> _field("US Airways"), _field("  n{"), _field("a.b"), _field("zero\\u200bwidth"), _field("")
    ('US Airways', "'  n{'", "'a.b'", "'zero\\\\u200bwidth'", "''")
    """
    plain = (key and key == key.strip() and "." not in key and len(key) <= 60
             and key.isprintable() and "'" not in key and '"' not in key)
    return key if plain else _shown(key).encode("ascii", "backslashreplace").decode("ascii")


def _shown(value: Any, limit: int = 60) -> str:
    """A user's value as an error message shows it: its repr, cut short, never raising.

    >>> _shown(10 ** 5000), _shown("ab"), len(_shown("x" * 500))
    ('an integer too long to show', "'ab'", 60)
    """
    try:
        text = repr(value)
    except ValueError:  # an integer of more than 4,300 digits
        return "an integer too long to show" if isinstance(value, int) else "a value too long to show"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _duration(doc: _Doc, path: Path_, value: Any) -> float:
    if value == 0 and not isinstance(value, bool):
        return 0.0
    m = _DURATION.match(value) if isinstance(value, str) else None
    if m is None:
        raise doc.error(path, f"give a duration with a unit, e.g. 90s, 30m, 2h, 1d (got {_shown(value)})")
    seconds = float(m.group(1)) * _UNIT[m.group(2)]
    if seconds > MAX_DURATION:  # also the digits that make no finite number
        raise doc.error(path, f"at most 10 years, got {value.strip()[:40]!r}")
    return seconds


def _mapping(doc: _Doc, path: Path_, value: Any, what: str = "a mapping") -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise doc.error(path, f"must be {what}, got {type(value).__name__}")
    return value


def _unknown(doc: _Doc, path: Path_, value: Mapping[str, Any], known: tuple[str, ...]) -> None:
    for key in value:
        if key not in known:
            raise doc.error((*path, key), f"unknown field; known: {', '.join(sorted(known))}")


def _detect_block(doc: _Doc, path: Path_, block: Mapping[str, Any]) -> _Overrides:
    preset = block.get("preset")
    if preset is not None and (not isinstance(preset, str) or preset not in PRESETS):
        raise doc.error((*path, "preset"), f"unknown preset {_shown(preset)}; known: {', '.join(PRESETS)}")
    values: dict[str, float] = {}
    for name in ("threshold", "critical"):
        if name in block:
            v = block[name]
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0.0 <= v <= 1.0:
                raise doc.error((*path, name), f"must be between 0 and 1, got {_shown(v)}")
            values[name] = float(v)
    if "min_volume" in block:
        v = block["min_volume"]
        if isinstance(v, bool) or not isinstance(v, int | float) or v < 0 or not math.isfinite(v):
            raise doc.error((*path, "min_volume"), f"must be a number of posts >= 0, got {_shown(v)}")
        values["min_volume"] = float(v)
    for name in ("cooldown", "persist", "warmup"):
        if name in block:
            values[name] = _duration(doc, (*path, name), block[name])
    return _Overrides(preset, values)


def _query(doc: _Doc, path: Path_, block: Mapping[str, Any]) -> Any:
    """The OR of a block's handles, hashtags, keywords and query; None if it has none."""
    parts = []
    for name, prefix in (("handles", "@"), ("hashtags", "#"), ("keywords", "")):
        items = block.get(name) or []
        if isinstance(items, str):
            items = [items]
        if not isinstance(items, list):
            raise doc.error((*path, name), f"must be a list of strings, got {type(items).__name__}")
        for i, item in enumerate(items):
            if not isinstance(item, str) or not item.strip():
                raise doc.error((*path, name, str(i)), f"must be a non-empty string, got {_shown(item)}")
            text = item.strip()
            if prefix and not text.startswith(prefix):
                text = prefix + text
            if prefix and not re.fullmatch(r"[@#]\w+", text):
                raise doc.error((*path, name, str(i)), f"{_shown(text)} is not a {name[:-1]}")
            parts.append((f'"{text}"' if " " in text else text, (*path, name, str(i))))
    if "query" in block:
        parts.append((block["query"], (*path, "query")))
    compiled = []
    for text, where in parts:
        if not isinstance(text, str):
            raise doc.error(where, f"must be a string, got {type(text).__name__}")
        try:
            compiled.append(compile_query(text))
        except QueryError as exc:
            raise doc.error(where, str(exc)) from None
    if not compiled:
        return None
    return compiled[0] if len(compiled) == 1 else (lambda t: any(q(t) for q in compiled))


def _brand(doc: _Doc, path: Path_, name: str, raw: Any, teams: Mapping[str, Any]) -> BrandConfig:
    block = _mapping(doc, path, raw)
    _unknown(doc, path, block, BRAND_FIELDS)
    query = _query(doc, path, block)
    by_lang = {}
    langs = _mapping(doc, (*path, "lang"), block.get("lang"), "a mapping of language → queries")
    for lang, sub in langs.items():
        sub_path = (*path, "lang", lang)
        sub = _mapping(doc, sub_path, sub)
        _unknown(doc, sub_path, sub, QUERY_FIELDS)
        q = _query(doc, sub_path, sub)
        if q is not None:
            by_lang[lang.lower()] = q
    if query is None and not by_lang:
        raise doc.error(path, "no query: give handles, hashtags, keywords or query")
    exclude = None
    if "exclude" in block:
        try:
            exclude = compile_query(str(block["exclude"]))
        except QueryError as exc:
            raise doc.error((*path, "exclude"), str(exc)) from None
    team = block.get("team")
    if team is not None and (not isinstance(team, str) or team not in teams):
        raise doc.error((*path, "team"), f"no such team {_shown(team)} under routing.teams")
    channels = {}
    for ch, sub in _mapping(doc, (*path, "channels"), block.get("channels")).items():
        sub_path = (*path, "channels", ch)
        sub = _mapping(doc, sub_path, sub)
        _unknown(doc, sub_path, sub, DETECT_FIELDS)
        channels[ch.lower()] = _detect_block(doc, sub_path, sub)
    return BrandConfig(name, Brand(name, query, by_lang, exclude), team,
                       _detect_block(doc, path, block), channels)


def _routing(doc: _Doc, raw: Any) -> tuple[dict[str, Any], dict[str, Any], str | None]:
    path: Path_ = ("routing",)
    block = _mapping(doc, path, raw)
    _unknown(doc, path, block, ("receivers", "teams", "default_team"))
    receivers = _mapping(doc, (*path, "receivers"), block.get("receivers"))
    for name, r in receivers.items():
        r = _mapping(doc, (*path, "receivers", name), r)
        if not isinstance(r.get("type"), str):
            raise doc.error((*path, "receivers", name), "needs a type (e.g. webhook, slack, alertmanager)")
    teams: dict[str, dict[str, tuple[str, ...]]] = {}
    for name, t in _mapping(doc, (*path, "teams"), block.get("teams")).items():
        t_path = (*path, "teams", name)
        t = _mapping(doc, t_path, t)
        _unknown(doc, t_path, t, SEVERITIES)
        teams[name] = {}
        for sev, names in t.items():
            if isinstance(names, str):
                names = [names]
            if not isinstance(names, list):
                raise doc.error((*t_path, sev), "must be a list of receiver names")
            for i, n in enumerate(names):
                if not isinstance(n, str) or n not in receivers:
                    raise doc.error((*t_path, sev, str(i)),
                                    f"no such receiver {_shown(n)} under routing.receivers")
            teams[name][sev] = tuple(names)
    default = block.get("default_team")
    if default is not None and (not isinstance(default, str) or default not in teams):
        raise doc.error((*path, "default_team"), f"no such team {_shown(default)} under routing.teams")
    return receivers, teams, default


TOP_LEVEL = ("version", "defaults", "channels", "brands", "routing")


def parse_watch(text: str | bytes, name: str = "<watch config>") -> WatchConfig:
    """Validate a watch config given as YAML text; ``name`` is used in error messages."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    if len(data) > MAX_WATCH_BYTES:
        raise WatchConfigError(f"{name}:1: (top level): the file is {len(data)} bytes, "
                               f"limit {MAX_WATCH_BYTES}")
    doc = _Doc(name)
    try:
        chars = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise WatchConfigError(f"{name}:{line}: (top level): not UTF-8 (byte {exc.start})") from None
    loader: _Loader | None = None
    try:
        loader = _Loader(chars)  # a character YAML does not allow is refused here already
        node = loader.get_single_node()
        raw = doc.plain(node, (), loader) if node is not None else {}
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise WatchConfigError(f"{name}:{line}: not valid YAML: {exc.problem or exc.context}") from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow (NUL, most controls)
        line = chars[:exc.position].count("\n") + 1
        raise WatchConfigError(f"{name}:{line}: not valid YAML: character {exc.character!r} "
                               "is not allowed") from None
    finally:
        if loader is not None:
            loader.dispose()
    top = _mapping(doc, (), raw)
    known = (*TOP_LEVEL, *SECTIONS)
    for key in top:
        if key not in known:
            raise doc.error((key,), f"unknown section; known: {', '.join(known)}")
    if top.get("version", 1) != 1:
        raise doc.error(("version",), f"unsupported version {_shown(top['version'])}; this release reads 1")
    defaults = _mapping(doc, ("defaults",), top.get("defaults"))
    _unknown(doc, ("defaults",), defaults, DETECT_FIELDS)
    channels: dict[str, _Overrides] = {}
    raw_ch = top.get("channels")
    if isinstance(raw_ch, list):
        raw_ch = {str(c): None for c in raw_ch}
    for ch, sub in _mapping(doc, ("channels",), raw_ch, "a list or mapping of channels").items():
        sub = _mapping(doc, ("channels", ch), sub)
        _unknown(doc, ("channels", ch), sub, DETECT_FIELDS)
        channels[ch.lower()] = _detect_block(doc, ("channels", ch), sub)
    receivers, teams, default_team = _routing(doc, top.get("routing"))
    brands_raw = _mapping(doc, ("brands",), top.get("brands"))
    if not brands_raw:
        raise doc.error(("brands",), "no brands: a watch config needs at least one")
    brands = {n: _brand(doc, ("brands", n), n, b, teams) for n, b in brands_raw.items()}
    sections = {k: SECTIONS[k](top[k], doc, (k,)) for k in SECTIONS if k in top}
    if "crisis_types" in sections or "playbooks" in sections:
        _check_playbooks(doc, sections)
    cfg = WatchConfig(name, hashlib.sha256(data).hexdigest()[:12], brands,
                      _detect_block(doc, ("defaults",), defaults), channels, receivers, teams,
                      default_team, sections)
    for b in brands:  # every series' policy must be a valid one
        for ch in ("*", *channels, *brands[b].channels):
            try:
                cfg.policy(b, ch, 60)
            except ValueError as exc:
                raise doc.error(("brands", b), f"settings for channel {_shown(ch)}: {exc}") from None
    return cfg


def load_watch(path: str | os.PathLike[str]) -> WatchConfig:
    """Read and validate a watch config file."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise WatchConfigError(f"{p}: cannot read the watch config: {exc.strerror}") from None
    return parse_watch(data, str(p))


class WatchFile:
    """A watch config file that is read again when it changes (hot reload).

    :meth:`poll` looks at the file's modification time and size, and when they moved,
    at its content hash; a changed, valid file becomes :attr:`config`. A changed file
    that does not validate is logged and kept out (:attr:`error`): the running config
    stays in force until the file is fixed.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.config = load_watch(self.path)
        self.error: str | None = None
        self._stat = self._stamp()

    def _stamp(self) -> tuple[float, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime, st.st_size)

    def poll(self) -> WatchConfig | None:
        """The new config if the file changed (and validates), else None."""
        stamp = self._stamp()
        if stamp == self._stat:
            return None
        self._stat = stamp
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            self.error = f"{self.path}: cannot read: {exc.strerror}"
            log.error("watch config not reloaded: %s", self.error)
            return None
        if hashlib.sha256(data).hexdigest()[:12] == self.config.version:
            return None
        try:
            cfg = parse_watch(data, str(self.path))
        except WatchConfigError as exc:
            self.error = str(exc)
            log.error("watch config not reloaded, keeping version %s: %s", self.config.version, exc)
            return None
        log.warning("watch config reloaded: version %s -> %s", self.config.version, cfg.version)
        self.config, self.error = cfg, None
        return cfg


def check_main(args: Any) -> int:
    """``stormwatch watch check FILE``: validate a watch config and print what it sets per series."""
    import sys

    try:
        cfg = load_watch(args.file)
    except WatchConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{cfg.source}: valid, version {cfg.version}; {len(cfg.brands)} brand(s), channels: "
          f"{', '.join(cfg.channels) or 'all'}")
    print(f"{'series':<32}{'preset':<10}{'threshold':>10}{'min_volume':>11}{'cooldown':>10}{'persist':>9}"
          f"  receivers (warning / critical)")
    for brand in cfg.brands:
        for ch in ("*", *cfg.channels, *(c for c in cfg.brands[brand].channels if c not in cfg.channels)):
            d = cfg.detect(brand, ch)
            rec = " / ".join(",".join(cfg.receivers_for(brand, s)) or "-" for s in SEVERITIES)
            print(f"{brand + '/' + ch:<32}{d.preset:<10}{d.threshold:>10g}{d.min_volume:>11g}"
                  f"{d.cooldown / 60:>9g}m{d.persist / 60:>8g}m  {rec}")
    return 0


def _crisis_error(doc: _Doc, exc: Exception) -> WatchConfigError:
    """A crisis-config error (``crisis_types[2].rules.en[0]: message``) with its line."""
    text = str(exc)
    where, _, message = text.partition(": ")
    path = tuple(p for p in re.split(r"[.\[\]]+", where) if p)
    return doc.error(path, message or text)


def _crisis_types_section(value: Any, doc: _Doc, path: Path_) -> Any:
    from stormwatch.crisis.types import CrisisClassifier, CrisisConfigError, parse_types

    try:
        return CrisisClassifier(parse_types(value, ".".join(path)))
    except CrisisConfigError as exc:
        raise _crisis_error(doc, exc) from None


def _check_playbooks(doc: _Doc, sections: Mapping[str, Any]) -> None:
    """Every crisis type (the config's, else the package's) needs its playbook."""
    from stormwatch.crisis.playbooks import check_coverage, default_playbooks
    from stormwatch.crisis.types import CrisisConfigError, default_classifier

    types = (sections.get("crisis_types") or default_classifier()).types
    try:
        check_coverage(types, sections.get("playbooks") or default_playbooks())
    except CrisisConfigError as exc:
        raise _crisis_error(doc, exc) from None


def _playbooks_section(value: Any, doc: _Doc, path: Path_) -> Any:
    from stormwatch.crisis.playbooks import parse_playbooks
    from stormwatch.crisis.types import CrisisConfigError

    try:
        return parse_playbooks(value, ".".join(path))
    except CrisisConfigError as exc:
        raise _crisis_error(doc, exc) from None


register_section("crisis_types", _crisis_types_section)
register_section("playbooks", _playbooks_section)

