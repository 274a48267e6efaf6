"""Playbooks: what to do for each crisis type, the knowledge source for staff and bots.

One playbook per crisis type (its id is the type's id) plus ``general`` for alerts
whose posts match no type. A playbook holds core messages per language, the owner
team, the channels to answer on, the escalation policy (re-send after N minutes,
the levels to escalate to), a runbook link and do/don't notes. The defaults ship as
``playbooks.yaml``; the same shape is the ``playbooks:`` section of a watch config.

>>> book = load_playbooks()
>>> book["outage"].owner, book["outage"].escalation.levels[0]
('it-incident-management', 'social-media-oncall')
>>> playbook_id("service"), playbook_id(None)
('service', 'general')
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from stormwatch.crisis.types import CrisisConfigError, CrisisType, load_types, load_yaml

#: The playbook of alerts whose posts match no crisis type.
GENERAL = "general"
_ID = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
_KEYS = {"id", "title", "owner", "channels", "core_messages", "escalation", "runbook", "do", "dont"}
MAX_TEXT = 2000


def playbook_id(crisis_type: str | None) -> str:
    """The playbook for a crisis type: the type's own, or ``general``."""
    return crisis_type or GENERAL


@dataclass(frozen=True)
class EscalationPolicy:
    """Re-send an unacknowledged critical alert after ``resend_after_minutes`` and move
    it one level up the ``levels`` (teams or rota names) each time."""

    resend_after_minutes: float
    levels: tuple[str, ...]


@dataclass(frozen=True)
class Playbook:
    id: str
    title: str
    owner: str
    channels: tuple[str, ...]
    core_messages: Mapping[str, str]
    escalation: EscalationPolicy
    runbook: str
    do: tuple[str, ...] = ()
    dont: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["core_messages"] = dict(self.core_messages)
        return d


def _text(item: Mapping[str, Any], key: str, at: str) -> str:
    v = item.get(key)
    if not isinstance(v, str) or not v.strip() or len(v) > MAX_TEXT:
        raise CrisisConfigError(f"{at}.{key}: expected a non-empty string of at most {MAX_TEXT} characters")
    return v


def _texts(item: Mapping[str, Any], key: str, at: str, required: bool = False) -> tuple[str, ...]:
    v = item.get(key, [])
    ok = isinstance(v, list) and all(isinstance(x, str) and x.strip() for x in v)
    if not ok or (required and not v):
        raise CrisisConfigError(f"{at}.{key}: expected a {'non-empty ' if required else ''}list of strings")
    return tuple(v)


def parse_playbooks(data: Any, where: str = "playbooks") -> dict[str, Playbook]:
    """Validate the ``playbooks:`` list (parsed YAML); returns them by id, in file order.

    >>> parse_playbooks([{"id": "general", "title": "t", "owner": "o", "channels": ["x"],
    ...                   "core_messages": {"en": "hi"}, "runbook": "https://wiki.example.com/x",
    ...                   "escalation": {"resend_after_minutes": 0, "levels": ["a"]}}])
    Traceback (most recent call last):
    ...
    stormwatch.crisis.types.CrisisConfigError: playbooks[0].escalation.resend_after_minutes: ...
    """
    if not isinstance(data, list) or not data:
        raise CrisisConfigError(f"{where}: expected a non-empty list of playbooks")
    out: dict[str, Playbook] = {}
    for i, item in enumerate(data):
        at = f"{where}[{i}]"
        if not isinstance(item, dict):
            raise CrisisConfigError(f"{at}: expected a mapping")
        unknown = sorted(set(item) - _KEYS)
        if unknown:
            raise CrisisConfigError(f"{at}: unknown key(s) {', '.join(unknown)}")
        pid = item.get("id")
        if not isinstance(pid, str) or not _ID.match(pid):
            raise CrisisConfigError(f"{at}.id: {pid!r} must be lower-case letters, digits, - or _")
        if pid in out:
            raise CrisisConfigError(f"{at}.id: {pid!r} is listed twice")
        msgs = item.get("core_messages")
        if not isinstance(msgs, dict) or not msgs:
            raise CrisisConfigError(f"{at}.core_messages: expected a mapping of language → message")
        for lang in msgs:
            if not isinstance(lang, str) or not re.fullmatch(r"[a-z]{2,3}", lang):
                raise CrisisConfigError(f"{at}.core_messages: {lang!r} is not a language code")
            _text(msgs, lang, f"{at}.core_messages")
        esc = item.get("escalation")
        if not isinstance(esc, dict):
            raise CrisisConfigError(f"{at}.escalation: expected resend_after_minutes and levels")
        after = esc.get("resend_after_minutes")
        if isinstance(after, bool) or not isinstance(after, int | float) or after <= 0:
            raise CrisisConfigError(f"{at}.escalation.resend_after_minutes: expected a number > 0")
        runbook = _text(item, "runbook", at)
        if not re.match(r"^https?://", runbook):
            raise CrisisConfigError(f"{at}.runbook: expected an http(s) link")
        out[pid] = Playbook(
            id=pid, title=_text(item, "title", at), owner=_text(item, "owner", at),
            channels=_texts(item, "channels", at, required=True), core_messages=dict(msgs),
            escalation=EscalationPolicy(float(after), _texts(esc, "levels", f"{at}.escalation", True)),
            runbook=runbook, do=_texts(item, "do", at), dont=_texts(item, "dont", at))
    return out


def check_coverage(types: Sequence[CrisisType], playbooks: Mapping[str, Playbook]) -> None:
    """Every crisis type needs its playbook, and ``general`` must exist."""
    missing = [t.id for t in types if t.id not in playbooks]
    if GENERAL not in playbooks:
        missing.append(GENERAL)
    if missing:
        raise CrisisConfigError(f"playbooks: no playbook for {', '.join(missing)}")


def load_playbooks(path: str | Path | None = None, types_path: str | Path | None = None
                   ) -> dict[str, Playbook]:
    """Playbooks from a YAML file with a ``playbooks:`` list (default: the package's),
    checked against the crisis types (default: the package's)."""
    data = load_yaml(path, "playbooks.yaml")
    if not isinstance(data, dict) or "playbooks" not in data:
        raise CrisisConfigError(f"{path or 'playbooks.yaml'}: expected a top-level 'playbooks:' list")
    book = parse_playbooks(data["playbooks"])
    check_coverage(load_types(types_path), book)
    return book


@lru_cache(maxsize=1)
def default_playbooks() -> dict[str, Playbook]:
    return load_playbooks()
