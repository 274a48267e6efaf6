"""Hostile input to the post parser: any bytes, any JSON, Unicode edge cases on purpose.

The contract: :func:`stormwatch.model.parse_post` either returns a post that every later
stage can write (UTF-8 JSON, round-trips to the same post) or raises ``InvalidRecord``
with one of the stable reason codes and a message that says what is wrong. Nothing else
escapes. The coverage-guided fuzzer (``stormwatch bench fuzz``) checks the same contract
over millions of inputs; these property tests run on every CI build.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stormwatch.bench.fuzz import NOW, check_post
from stormwatch.model import REASONS, InvalidRecord, parse_post

#: Characters that break naive code: NUL and controls, zero-width and bidi controls,
#: a lone surrogate, a BOM, combining marks, an emoji ZWJ sequence, astral planes.
EDGE = ["\x00", "\x01", "\n", "\r", "\t", "\u200b", "\u200d", "\u202e", "\u2066", "\ufeff",
        chr(0xD800), chr(0xDFFF), "\u0301", "\U0001F469\u200d\U0001F4BB", "\U00010000", "\uffff"]

edgy_text = st.lists(st.one_of(st.text(max_size=20), st.sampled_from(EDGE)), max_size=12).map("".join)
json_scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), edgy_text)
json_value = st.recursive(json_scalar, lambda c: st.lists(c, max_size=4) | st.dictionaries(edgy_text, c,
                                                                                          max_size=4),
                          max_leaves=12)
post_like = st.fixed_dictionaries({}, optional={
    "id": st.one_of(edgy_text, json_value),
    "created_at": st.one_of(st.sampled_from(["2015-02-23T01:02:03Z", "2015-02-30T00:00:00Z", "1e9"]),
                            st.integers(-10**20, 10**20), st.floats(), edgy_text),
    "channel": st.one_of(st.just("twitter"), edgy_text, json_value),
    "brand": st.one_of(st.just("United"), edgy_text, json_value),
    "text": st.one_of(edgy_text, json_value),
    "lang": st.one_of(st.none(), st.just("en"), edgy_text),
    "author": st.one_of(st.none(), edgy_text, json_value),
    "retweets": st.one_of(st.integers(-5, 10**30), json_value),
})


def check(raw) -> None:
    """The parser's contract for one input (the fuzzer's, run here on every build)."""
    assert check_post(raw) in REASONS | {"accepted"}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_any_bytes(raw):
    check(raw)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(post_like)
def test_any_post_shaped_json(d):
    check(d)
    check(json.dumps(d))  # as text: escapes such as a lone surrogate come from the JSON


@settings(max_examples=200, deadline=None)
@given(json_value)
def test_any_json_value(v):
    check(json.dumps(v))


GOOD = {"id": "p1", "created_at": "2015-02-23T01:02:03Z", "channel": "twitter", "brand": "United",
        "text": "ok"}


@pytest.mark.parametrize("field, value, reason", [
    ("text", "half an emoji " + chr(0xD83D), "bad_encoding"),
    ("brand", "Uni\u202eted", "bad_value"),          # right-to-left override: a spoofed brand
    ("brand", "United\u200b", "bad_value"),          # zero-width space: a second "United" series
    ("channel", "twit\x00ter", "bad_value"),
    ("id", "p\n1", "bad_value"),
    ("lang", "en" * 40, "bad_value"),
    ("author", chr(0xDC00), "bad_encoding"),
    ("text", "x" * 20_001, "text_too_long"),
])
def test_unicode_edge_cases_are_rejected_with_a_reason(field, value, reason):
    with pytest.raises(InvalidRecord) as info:
        parse_post(json.dumps({**GOOD, field: value}), now=NOW)
    assert info.value.reason == reason and field in info.value.detail


@pytest.mark.parametrize("text", ["\U0001F469\u200d\U0001F4BB broken app",  # a ZWJ emoji sequence
                                  "\u05e9\u05dc\u05d5\u05dd \u200fRTL mark",  # Hebrew with a mark
                                  "zero\u200bwidth", "tab\tand\nnewline"])
def test_real_writing_in_the_text_is_kept(text):
    assert parse_post(json.dumps({**GOOD, "text": text}), now=NOW).text == text


def test_deep_nesting_and_huge_records_are_rejected_quickly():
    for raw, reason in [("[" * 100_000 + "]" * 100_000, "malformed_json"),
                        ('{"a":' * 30_000 + "1" + "}" * 30_000, "malformed_json"),
                        (json.dumps({**GOOD, "text": "y" * 1_000_000}), "too_large")]:
        with pytest.raises(InvalidRecord) as info:
            parse_post(raw, now=NOW)
        assert info.value.reason == reason
