"""Input positions kept inside state records, so that restored state says where to resume.

A stateful agent writes each key's state, together with the input position it has
applied, as one changelog record. Changelog writes leave a worker in order, so a worker
that stops uncleanly loses at most a *suffix* of them: whatever the restored table holds
is a consistent prefix of the work. Hence, per input partition, the work is complete up to
the highest offset any restored state has applied, and the input resumes right after it
— whatever offset the consumer had committed (it can be ahead of the restored state, which
would lose records, or behind it, which would count them twice).

A position is the input partition, the input offset, and optionally the offset of the
record that input record was made from (``source``: an enriched post's offset on
``posts.raw``). The source offset lets a stage skip the copies an upstream stage sends
again after its own restart.

>>> state = with_position({"count": 3}, Position(2, 41, source=7))
>>> state["applied"]
{'partition': 2, 'offset': 41, 'source': 7}
>>> applied(state, Position(2, 41)), applied(state, Position(2, 42, source=7))
(True, True)
>>> applied(state, Position(2, 42, source=8)), applied(state, Position(3, 1))
(False, False)
>>> resume_offsets([state, with_position({}, Position(2, 12)), with_position({}, Position(5, 3))], [2, 4])
{2: 42, 4: 0}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

#: The key under which a state record keeps its position.
KEY = "applied"


@dataclass(frozen=True, slots=True)
class Position:
    """Where one input record sits: its partition and offset, and its source's offset."""

    partition: int
    offset: int
    source: int | None = None


def with_position(state: dict[str, Any], pos: Position | None) -> dict[str, Any]:
    """``state`` with ``pos`` recorded as applied (unchanged when ``pos`` is None)."""
    if pos is not None:
        state[KEY] = {"partition": pos.partition, "offset": pos.offset, "source": pos.source}
    return state


def position_of(state: Mapping[str, Any] | None) -> Position | None:
    """The position a state record has applied, if it records one."""
    if not state or not state.get(KEY):
        return None
    a = state[KEY]
    return Position(int(a["partition"]), int(a["offset"]), a.get("source"))


def applied(state: Mapping[str, Any] | None, pos: Position) -> bool:
    """Whether ``state`` already holds the record at ``pos`` (or the source it came from).

    Only positions on the same partition compare: a key moved to another partition (a
    different partition count) starts afresh.
    """
    last = position_of(state)
    if last is None or last.partition != pos.partition:
        return False
    if pos.offset <= last.offset:
        return True
    return pos.source is not None and last.source is not None and pos.source <= last.source


def marker_key(partition: int) -> str:
    """The table key of a partition's batch marker (never a brand or series name).

    A batched stage writes the changed keys' states of a batch in key order, not input
    order, so a lost suffix of the changelog can keep a later key's state and lose an
    earlier one's: the highest position a surviving state holds no longer means that
    everything before it survived. After a batch's states it writes one marker per input
    partition with the batch's last offset; a marker that survived means every state
    written before it did.
    """
    return f"{MARKER_PREFIX}{partition}"


def marker(pos: Position) -> dict[str, Any]:
    """A batch marker's state: all work on ``pos.partition`` up to ``pos.offset`` is stored."""
    return with_position({"marker": True}, pos)


def batched(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` flagged as written by a batch: its table resumes from markers only."""
    state[BATCHED] = True
    return state


#: The flag of a state written by a batch (:func:`batched`).
BATCHED = "batched"


#: Every marker key starts so (a NUL byte: no brand or series name does).
MARKER_PREFIX = "\x00batch/"


def is_marker(key: str) -> bool:
    return key.startswith(MARKER_PREFIX)


def resume_offsets(states: Iterable[Mapping[str, Any]], partitions: Iterable[int]) -> dict[int, int]:
    """Per partition, the offset to resume at: one past the highest applied, else 0.

    A partition none of whose state survived starts from its beginning (0, which a
    consumer reads as the earliest offset still kept). Where batch markers exist
    (:func:`marker_key`), only they count: one past the partition's marker, else 0 —
    re-reading is safe, each state skips the records it already holds. A state written
    by a batch (:func:`batched`) counts as a batched table even when no marker survived.

    >>> keyed = [with_position({}, Position(1, 90)), marker(Position(1, 70))]
    >>> resume_offsets(keyed, [1, 2])
    {1: 71, 2: 0}
    >>> resume_offsets([batched(with_position({}, Position(1, 90)))], [1])
    {1: 0}
    """
    wanted = set(partitions)
    out = dict.fromkeys(wanted, 0)
    states = list(states)
    by_batch = any(s.get("marker") or s.get(BATCHED) for s in states if isinstance(s, Mapping))
    for state in states:
        if by_batch and not state.get("marker"):
            continue
        pos = position_of(state)
        if pos is not None and pos.partition in wanted:
            out[pos.partition] = max(out[pos.partition], pos.offset + 1)
    return dict(sorted(out.items()))
