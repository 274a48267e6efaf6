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


# ---------------------------------------------------------------- the other readers of hostile input
# Each mirrors a fuzz target of ``stormwatch bench fuzz`` (the same contract function).

from stormwatch.bench.fuzz import (  # noqa: E402
    CONNECTOR_REASONS,
    TARGETS,
    check_api,
    check_bluesky,
    check_mastodon,
    check_rss,
    check_watch,
    check_webhook,
)
from stormwatch.watch import MAX_WATCH_BYTES, WatchConfigError, parse_watch  # noqa: E402

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_every_seed_keeps_its_contract(target):
    contract, seeds = TARGETS[target]
    assert seeds and all(isinstance(contract(s), str) for s in seeds)


yaml_scalar = st.one_of(edgy_text, st.integers(-10**6, 10**6), st.floats(), st.booleans(), st.none(),
                        st.sampled_from(["2026-02-30", "1e999s", "9" * 400 + "d", "fewer", "&a x", "*a",
                                         "!!binary AA", "<<", "0x" + "f" * 5000]))
detect_like = st.dictionaries(st.sampled_from(["preset", "threshold", "critical", "min_volume", "cooldown",
                                               "persist", "warmup", "team", "keywords", "query", "x"]),
                              st.one_of(yaml_scalar, st.lists(yaml_scalar, max_size=3)), max_size=5)
watch_like = st.fixed_dictionaries({}, optional={
    "version": yaml_scalar,
    "defaults": detect_like,
    "channels": st.one_of(st.lists(yaml_scalar, max_size=3),
                          st.dictionaries(edgy_text, detect_like, max_size=2)),
    "brands": st.dictionaries(edgy_text, detect_like, max_size=3),
    "routing": st.fixed_dictionaries({}, optional={
        "receivers": st.dictionaries(edgy_text, st.dictionaries(st.just("type"), yaml_scalar), max_size=2),
        "teams": st.dictionaries(edgy_text, st.dictionaries(st.sampled_from(["warning", "critical"]),
                                                            st.lists(yaml_scalar, max_size=2)), max_size=2),
        "default_team": yaml_scalar}),
})


@FAST
@given(st.binary(max_size=300))
def test_watch_any_bytes(raw):
    assert check_watch(raw)


@FAST
@given(watch_like)
def test_watch_any_config_shaped_yaml(d):
    # As JSON (YAML reads it) and with the scalars unquoted, so YAML types them itself.
    assert check_watch(json.dumps(d))
    assert check_watch(json.dumps(d).replace('"', ""))


@pytest.mark.parametrize("text, says", [
    ("a: &a [*a, *a]\nbrands: *a\n", "recursive alias"),
    ("defaults: &d {<<: *d}\n", "includes its own mapping"),
    ("".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 10)).replace("*l0", "x"),
     "aliases expanding"),
    ("[" * 100_000 + "]" * 100_000, "nested deeper than 64"),
    ("brands: {A: {keywords: [a], cooldown: " + "9" * 400 + "d}}", "at most 10 years"),
    ("brands: {A: {keywords: [a], preset: [x]}}", "unknown preset"),
    ("brands: {A: {keywords: [a], team: {x: 1}}}", "no such team"),
    ("routing: {receivers: {r: {type: w}}, teams: {t: {warning: [[r]]}}}\nbrands: {A: {keywords: [a]}}",
     "no such receiver"),
    ("brands: {A: {keywords: [a], created: 2026-02-30}}", "cannot read '2026-02-30'"),
    ("brands: {A: {keywords: [\x00]}}", "not allowed"),
    ("brands:\n  A: {keywords: [a]}\n  x: " + "y" * MAX_WATCH_BYTES, "limit 1048576"),
])
def test_watch_bombs_and_traps_are_rejected_with_a_line(text, says):
    with pytest.raises(WatchConfigError, match=r"^w\.yaml:\d+: ") as info:
        parse_watch(text, "w.yaml")
    assert says in str(info.value)


def test_watch_invalid_utf8_names_the_line():
    with pytest.raises(WatchConfigError, match=r"^w\.yaml:2: \(top level\): not UTF-8"):
        parse_watch(b"brands:\n  A\xff: {keywords: [a]}\n", "w.yaml")


any_json = st.one_of(json_value, post_like, st.lists(post_like, max_size=4))


@FAST
@given(st.one_of(st.binary(max_size=300), any_json.map(lambda v: json.dumps(v).encode())))
def test_webhook_any_body(raw):
    assert check_webhook(raw)


def test_webhook_refuses_huge_numbers_and_deep_nesting_with_a_message():
    assert check_webhook(b'{"id": ' + b"1" * 5000 + b"}") == "malformed_json"
    assert check_webhook(b"[" * 100_000) == "malformed_json"


status_like = st.fixed_dictionaries({}, optional={
    "id": st.one_of(edgy_text, json_value), "uri": st.one_of(edgy_text, json_value),
    "created_at": st.one_of(st.just("2026-12-01T10:00:00Z"), edgy_text, json_value),
    "content": st.one_of(edgy_text.map(lambda t: f"<p>{t}</p>"), json_value),
    "spoiler_text": json_value, "language": json_value, "reblogs_count": json_value, "reblog": json_value,
    "account": st.one_of(json_value, st.fixed_dictionaries({"acct": json_value, "url": json_value}))})


@FAST
@given(st.lists(st.one_of(st.sampled_from(["event: update", "event: delete", ":hb", "", "id: 1"]),
                          status_like.map(lambda s: "data: " + json.dumps(s)),
                          edgy_text.map(lambda t: "data: " + t)), max_size=8))
def test_mastodon_any_stream(lines):
    assert check_mastodon("\n".join(lines).encode("utf-8", "surrogatepass"))


@FAST
@given(st.one_of(st.binary(max_size=200), st.fixed_dictionaries({"kind": st.just("commit")}, optional={
    "did": json_value, "time_us": json_value, "commit": st.fixed_dictionaries(
        {"operation": st.just("create"), "collection": st.just("app.bsky.feed.post")},
        optional={"rkey": json_value, "record": st.one_of(json_value, post_like)})}).map(
            lambda e: json.dumps(e).encode())))
def test_bluesky_any_frame(raw):
    assert check_bluesky(raw)


def xml_text(t: str) -> str:
    return t.replace("&", "&amp;").replace("<", "&lt;")


@FAST
@given(st.one_of(st.binary(max_size=300), st.lists(st.tuples(
    st.sampled_from(["guid", "link", "pubDate", "title", "description", "author"]), edgy_text),
    max_size=6).map(lambda kv: ("<rss><channel><item>" + "".join(f"<{k}>{xml_text(v)}</{k}>" for k, v in kv)
                                + "</item></channel></rss>").encode("utf-8", "surrogatepass"))))
def test_rss_any_document(raw):
    assert check_rss(raw)


def test_rss_entity_bombs_and_deep_nesting_are_rejected():
    lol = b'<!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><rss>&b;</rss>'
    assert check_rss(lol) == "malformed_xml"
    assert check_rss(b"<rss>" + b"<x>" * 50_000 + b"</x>" * 50_000 + b"</rss>") in CONNECTOR_REASONS | {
        "no_entries"}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 7), edgy_text, st.text(max_size=30), st.one_of(st.binary(max_size=100), any_json.map(
    lambda v: json.dumps(v).encode()), st.fixed_dictionaries({"by": edgy_text}, optional={
        "note": st.one_of(edgy_text, json_value)}).map(lambda v: json.dumps(v).encode())))
def test_api_any_request(route, ident, query, body):
    raw = bytes([route]) + ident.encode("utf-8", "surrogatepass").replace(b"\n", b"") + b"\n" + \
        query.encode("utf-8", "surrogatepass").replace(b"\n", b"") + b"\n" + body
    assert int(check_api(raw)) < 500


# ---------------------------------------------------------------- what the fuzzers found (regressions)

def test_a_number_of_5000_digits_is_malformed_json_not_a_crash():
    with pytest.raises(InvalidRecord, match="more than 4300 digits") as info:
        parse_post('{"id": ' + "1" * 5000 + "}", now=NOW)
    assert info.value.reason == "malformed_json"


def test_a_dead_letter_quoting_a_lone_surrogate_can_be_written():
    from stormwatch.model import dumps
    from stormwatch.pipeline import dead_letter

    dl = dead_letter("ingest", [{"id": chr(0xDFFF)}], "not_an_object", "bad " + chr(0xD800),
                     "w" + chr(0xDC00))
    assert json.loads(dumps(dl).decode("utf-8"))["raw"] == '[{"id": "\\udfff"}]'


def test_a_date_with_a_twenty_digit_year_is_no_date():
    from stormwatch.ingest.rss import parse_feed
    from stormwatch.ingest.source import retry_after_seconds

    huge = "Tue, 01 Dec 99999999999999999999 10:00:00 GMT"
    feed = f"<rss><channel><item><guid>g</guid><pubDate>{huge}</pubDate></item></channel></rss>"
    assert parse_feed(feed.encode(), "http://x", "news")[0].value.reason == "bad_timestamp"
    assert retry_after_seconds(huge) is None


@pytest.mark.parametrize("raw, status", [
    (b"\x04\nbrand=\xff\xfe\n", "400"),                                  # a query string that is not UTF-8
    (b"\x00Acme/*@2015-02-22T22:22Z\n\n{\"by\": NaN}", "422"),             # NaN echoed back made a 500
    (b"\x00Acme/*@2015-02-22T22:22Z\n\n{\"by\": 1, \"\\ud800\": 2}", "422"),  # so did a lone surrogate
])
def test_api_requests_that_made_a_500(raw, status):
    assert check_api(raw) == status


@pytest.mark.parametrize("markup", ["<![CT x]]>", "<![\x00cmeDown</!></", "a <![ b",
                                    "<![if !IE]>x<![endif]>"])
def test_html_with_a_malformed_marked_section_is_text_not_a_crash(markup):
    from stormwatch.ingest.source import html_to_text

    status = {"id": "1", "created_at": "2026-12-01T10:00:00Z", "content": markup}
    assert check_mastodon(b"event: update\ndata: " + json.dumps(status).encode() + b"\n\n")
    assert isinstance(html_to_text(markup), str)
