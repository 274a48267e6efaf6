"""The watch config (validation with file:line:field errors, presets) and brand matching."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stormwatch.config import REPO_ROOT
from stormwatch.detectors.policy import PolicyConfig
from stormwatch.nlp.brands import compile_query
from stormwatch.nlp.lexicon import LexiconScorer
from stormwatch.pipeline import Detection, Enricher
from stormwatch.watch import WatchConfigError, WatchFile, load_watch, parse_watch

EXAMPLE = REPO_ROOT / "deploy" / "watch.example.yaml"

GOOD = """\
version: 1
defaults:
  preset: balanced
routing:
  receivers:
    slack: {type: slack}
  teams:
    social: {warning: [slack], critical: [slack]}
brands:
  Acme:
    handles: ["@acme"]
    team: social
    threshold: 0.9
"""


def error_of(text: str) -> str:
    with pytest.raises(WatchConfigError) as exc:
        parse_watch(text, "watch.yaml")
    return str(exc.value)


def test_unknown_brand_field_names_file_line_and_field() -> None:
    text = GOOD + "    handle: ['@acme']\n"
    assert error_of(text) == ("watch.yaml:14: brands.Acme.handle: unknown field; known: channels, "
                              "cooldown, critical, exclude, handles, hashtags, keywords, lang, min_volume, "
                              "persist, preset, query, team, threshold, warmup")


def test_bad_regex_names_the_query_and_the_regex_error() -> None:
    text = GOOD + "    query: '@acme AND /refund(s/'\n"
    assert error_of(text) == ("watch.yaml:14: brands.Acme.query: bad regex /refund(s/: "
                              "missing ), unterminated subpattern at position 6")


def test_negative_threshold() -> None:
    text = GOOD.replace("threshold: 0.9", "threshold: -0.2")
    assert error_of(text) == "watch.yaml:13: brands.Acme.threshold: must be between 0 and 1, got -0.2"


@pytest.mark.parametrize(("snippet", "message"), [
    ("    preset: loud\n",
     "watch.yaml:14: brands.Acme.preset: unknown preset 'loud'; known: fewer, balanced, more"),
    ("    cooldown: 30\n", "watch.yaml:14: brands.Acme.cooldown: give a duration with a unit, "
                         "e.g. 90s, 30m, 2h, 1d (got 30)"),
    ("    min_volume: -1\n", "watch.yaml:14: brands.Acme.min_volume: must be a number of posts >= 0, got -1"),
    ("    query: '@acme AND (late'\n", "watch.yaml:14: brands.Acme.query: expected ')' at position 15, "
                                      "found the end of the query"),
    ("  Other: {team: nobody, handles: ['@o']}\n", "watch.yaml:14: brands.Other.team: no such team 'nobody' "
                                                   "under routing.teams"),
    ("  Other: {preset: more}\n", "watch.yaml:14: brands.Other: no query: give handles, hashtags, keywords "
                                  "or query"),
    ("playbook: {}\n", "watch.yaml:14: playbook: unknown section; known: version, defaults, channels, "
                       "brands, routing, crisis_types, playbooks"),
    ("playbooks: {}\n", "watch.yaml:14: playbooks: expected a non-empty list of playbooks"),
    ("  Acme: {handles: ['@x']}\n", "watch.yaml:14: brands.Acme: given twice"),
    # A key that could be misread in the field path is quoted (found by the watch fuzzer).
    ("'  n{': 1\n", "watch.yaml:14: '  n{': unknown section; known: version, defaults, channels, "
                    "brands, routing, crisis_types, playbooks"),
    ("  'Acme.Pay': {preset: loud, handles: ['@p']}\n",
     "watch.yaml:14: brands.'Acme.Pay'.preset: unknown preset 'loud'; known: fewer, balanced, more"),
    ("  \"Zero\\u200bWidth\": {preset: loud, handles: ['@z']}\n",
     "watch.yaml:14: brands.'Zero\\u200bWidth'.preset: unknown preset 'loud'; known: fewer, balanced, more"),
])
def test_more_errors(snippet: str, message: str) -> None:
    assert error_of(GOOD + snippet) == message


def test_yaml_syntax_error_has_a_line() -> None:
    assert error_of("brands:\n  Acme: [\n").startswith("watch.yaml:3: not valid YAML")


def test_presets_and_overrides_resolve_per_series() -> None:
    cfg = parse_watch("""
defaults: {preset: fewer, cooldown: 2h}
channels:
  twitter: {min_volume: 2}
  facebook: {}
brands:
  Acme:
    keywords: [acme]
    preset: more
    channels:
      twitter: {threshold: 0.8, persist: 5m}
  Beta:
    hashtags: [beta]
""", "w.yaml")
    acme_tw = cfg.policy("Acme", "twitter", 60)
    assert (acme_tw.threshold, acme_tw.min_volume, acme_tw.persist, acme_tw.cooldown) == (0.8, 2.0, 5, 120)
    acme_all = cfg.policy("Acme", "*", 60)
    assert (acme_all.threshold, acme_all.min_volume, acme_all.persist) == (0.7, 0.0, 1)
    beta_fb = cfg.policy("Beta", "facebook", 300)  # 5-minute buckets: durations in buckets of 5 min
    assert (beta_fb.threshold, beta_fb.min_volume, beta_fb.persist, beta_fb.cooldown) == (0.95, 5.0, 1, 24)
    assert cfg.watches_channel("twitter") and not cfg.watches_channel("instagram")


def test_balanced_preset_is_the_default_policy_at_one_minute_buckets() -> None:
    cfg = parse_watch("brands: {A: {keywords: [a]}}")
    assert cfg.policy("A", "*", 60) == PolicyConfig()


def test_queries_boolean_phrases_handles_hashtags_and_languages() -> None:
    q = compile_query('(@acme OR #acmebank OR "acme bank") AND NOT (job* OR /\\bhiring\\b/)')
    assert q("Why is @ACME down?") and q("#AcmeBank app broken") and q("the Acme  bank app")
    assert not q("@acmebankjobs") and not q("@acme we are hiring") and not q("@acme jobs fair")
    assert not q("acme banking")  # the phrase wants whole words
    cfg = parse_watch("""
brands:
  Acme:
    keywords: [acme]
    lang: {de: {keywords: [acmebank]}}
    exclude: stock
""")
    m = cfg.matcher()
    assert m.match("acme is down") == ["Acme"]
    assert m.match("acmebank ist down", "de") == ["Acme"] and m.match("acmebank is down", "en") == []
    assert m.match("acme stock falls") == []


def test_example_config_matches_every_airline_post_to_its_own_brand(data: Path) -> None:
    cfg = load_watch(EXAMPLE)
    m = cfg.matcher()
    both = own = n = 0
    for line in (data / "posts" / "airline_posts.jsonl").open():
        d = json.loads(line)
        brands = m.match(d["text"], d.get("lang"))
        n += 1
        own += d["brand"] in brands
        both += len(brands) > 1
    assert own == n == 9843
    assert 250 < both < 300  # e.g. "@USAirways @AmericanAir": counted for both


def raw(i: int, text: str, channel: str = "twitter") -> bytes:
    return json.dumps({"id": str(i), "created_at": "2015-02-23T01:00:00Z", "channel": channel,
                       "text": text}).encode()


def test_enricher_decides_brands_from_text_and_counts_unmatched() -> None:
    cfg = parse_watch("channels: [twitter]\nbrands:\n  A: {handles: ['@a']}\n  B: {handles: ['@b']}\n")
    enr = Enricher(LexiconScorer(), cfg)
    out = enr.enrich_matched([raw(1, "@a @b worst"), raw(2, "nothing"), b'{"id": 3',
                              raw(4, "@a", "facebook")])
    assert [sp.post.brand for sp in out[0]] == ["A", "B"]
    assert out[0][0].sentiment == out[0][1].sentiment and out[0][0].sentiment.label == "negative"
    assert out[1] == [] and out[2].reason == "malformed_json" and out[3] == []
    assert enr.unmatched == 2
    plain = Enricher(LexiconScorer()).enrich_matched([raw(1, "@a")])  # no config: brand field required
    assert plain[0].reason == "missing_field"


def test_detection_applies_a_new_config_at_the_next_bucket() -> None:
    from datetime import UTC, datetime, timedelta

    from stormwatch.model import SeriesStats

    v1 = parse_watch("brands: {A: {keywords: [a], min_volume: 1000}}", "v1")
    v2 = parse_watch("brands: {A: {keywords: [a], min_volume: 0}}", "v2")
    det = Detection({}, "poisson-window", {"window": 5, "warmup": 30, "activation": 5},
                    PolicyConfig(0.999, critical=0.9999), watch=v1)
    t0 = datetime(2015, 2, 22, tzinfo=UTC)
    quiet = [a for i in range(120) for a in det.observe(SeriesStats("A", "*", t0 + timedelta(minutes=i), 60,
                                                                    1 + i % 2))]
    burst1 = [a for i in range(120, 125) for a in det.observe(SeriesStats("A", "*", t0 + timedelta(minutes=i),
                                                                          60, 12))]
    assert quiet == [] and burst1 == []  # the score is high but the volume is under 1000
    det.set_watch(v2)
    nxt = det.observe(SeriesStats("A", "*", t0 + timedelta(minutes=125), 60, 12))
    assert [(a.event, a.config_version) for a in nxt] == [("open", v2.version)]


def test_watch_file_reloads_a_changed_valid_file_and_keeps_the_old_on_error(tmp_path: Path) -> None:
    p = tmp_path / "w.yaml"
    p.write_text("brands: {A: {keywords: [a], threshold: 0.9}}\n")
    wf = WatchFile(p)
    v1 = wf.config.version
    assert wf.poll() is None
    p.write_text("brands: {A: {keywords: [a], threshold: -1}}\n")
    assert wf.poll() is None and wf.config.version == v1
    assert wf.error == f"{p}:1: brands.A.threshold: must be between 0 and 1, got -1"
    p.write_text("brands: {A: {keywords: [a], threshold: 0.7}}\n")
    new = wf.poll()
    assert new is not None and new.version != v1 and wf.config.policy("A", "*", 60).threshold == 0.7
    assert wf.error is None


def test_watch_check_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from stormwatch.cli import main

    assert main(["watch", "check", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert "valid, version" in out
    line = next(x for x in out.splitlines() if x.startswith("Virgin America/twitter"))
    assert line.split()[2:7] == ["more", "0.7", "3", "30m", "0m"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("brands:\n  A:\n    keywords: [a]\n    threshold: -1\n")
    assert main(["watch", "check", str(bad)]) == 2
    assert capsys.readouterr().err == f"error: {bad}:4: brands.A.threshold: must be between 0 and 1, got -1\n"


def test_a_value_too_long_to_print_still_gets_its_line_and_field() -> None:
    # Found by the property test: a 5,000-digit version (hexadecimal: Python's 4,300-digit
    # limit does not apply to reading it, only to printing it) made the error message raise.
    with pytest.raises(WatchConfigError) as err:
        parse_watch("version: 0x" + "f" * 5000 + "\n", "w.yaml")
    assert str(err.value) == ("w.yaml:1: version: cannot read '0xffffffffffffffffffffffffffffffffffffff': "
                              "a number over 64 bits")
    with pytest.raises(WatchConfigError) as err:
        parse_watch("brands:\n  A:\n    channels: [0x" + "f" * 5000 + "]\n", "w.yaml")
    assert str(err.value).startswith("w.yaml:3: brands.A.channels.0: cannot read")


CRISIS_WATCH = """\
brands:
  Acme:
    keywords: [acme]
crisis_types:
  - id: outage
    label: Outage
    rules:
      de: [kaputt, "geht nicht"]
  - id: fees
    label: Fees
    rules:
      en: [overdraft*]
playbooks:
  - id: outage
    title: Outage
    owner: it
    channels: [twitter]
    core_messages: {de: "Wir arbeiten daran."}
    escalation: {resend_after_minutes: 15, levels: [oncall]}
    runbook: https://wiki.example.com/outage
  - id: fees
    title: Fees
    owner: product
    channels: [twitter]
    core_messages: {en: "We hear you."}
    escalation: {resend_after_minutes: 30, levels: [social]}
    runbook: https://wiki.example.com/fees
  - id: general
    title: General
    owner: social
    channels: [twitter]
    core_messages: {en: "Thanks for telling us."}
    escalation: {resend_after_minutes: 30, levels: [social]}
    runbook: https://wiki.example.com/general
"""


def test_the_watch_config_carries_crisis_rules_and_playbooks_and_enrich_uses_them(tmp_path: Path) -> None:
    cfg = parse_watch(CRISIS_WATCH, "w.yaml")
    assert sorted(cfg.sections["playbooks"]) == ["fees", "general", "outage"]
    enr = Enricher(LexiconScorer(), cfg)
    out = enr.enrich_matched([raw(1, "acme app ist kaputt"), raw(2, "acme overdraft charges again"),
                              raw(3, "acme Störung")])
    assert [[sp.crisis for sp in item] for item in out] == [["outage"], ["fees"], [None]]
    enr.set_watch(parse_watch("brands:\n  Acme:\n    keywords: [acme]\n", "w.yaml"))  # back to the package's
    assert enr.enrich_matched([raw(3, "acme Störung")])[0][0].crisis == "outage"
    path = tmp_path / "watch.yaml"
    path.write_text(CRISIS_WATCH)
    from stormwatch.api.server import watch_playbooks
    from stormwatch.config import Settings

    assert watch_playbooks(Settings(watch=str(path)))["outage"].owner == "it"
    assert watch_playbooks(Settings()) is None


@pytest.mark.parametrize(("change", "message"), [
    (("[kaputt, ", "['re:(', "), "w.yaml:8: crisis_types.0.rules.de"),
    (("  - id: fees\n    title: Fees", "  - id: feesx\n    title: Fees"),
     "w.yaml:13: playbooks: no playbook for fees"),
])
def test_crisis_sections_errors_name_the_line(change: tuple[str, str], message: str) -> None:
    with pytest.raises(WatchConfigError) as err:
        parse_watch(CRISIS_WATCH.replace(*change), "w.yaml")
    assert str(err.value).startswith(message), str(err.value)
