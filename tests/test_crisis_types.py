"""Crisis-type rules in German and English, and their loader's errors."""

import pytest

from stormwatch.crisis.types import (
    CrisisClassifier,
    CrisisConfigError,
    default_classifier,
    load_types,
    parse_types,
)

CASES_DE = [
    ("Die App geht nicht, seit heute Morgen", "outage"),
    ("Schon wieder eine Störung beim Online-Banking", "outage"),
    ("Ich kann nicht überweisen, was ist da los?", "outage"),
    ("Mein Konto wurde gehackt!!", "security"),
    ("Datenleck bei der Bank? Meine persönlichen Daten sind im Netz", "security"),
    ("Achtung Phishing: gefälschte E-Mail im Namen der Bank", "fraud"),
    ("Betrüger haben mein Konto leergeräumt", "fraud"),
    ("Die neuen Gebühren sind eine Frechheit", "fees"),
    ("Kontoführungsgebühren schon wieder erhöht", "fees"),
    ("Seit 40 Minuten in der Warteschleife, Kundenservice ist eine Katastrophe", "service"),
    ("Der Zug hat schon wieder 50 Minuten Verspätung", "service"),
    ("Rassistische Werbung, ich rufe zum Boykott auf", "statement"),
]
CASES_EN = [
    ("The app is down again, can't log in", "outage"),
    ("your website isn't working", "outage"),
    ("so apparently all of your computers crashed at BWI?", "outage"),
    ("my account got hacked and there was a data breach", "security"),
    ("got a phishing email pretending to be you", "fraud"),
    ("someone made an unauthorized payment from my card, fraud!", "fraud"),
    ("$200 change fee? hidden fees everywhere", "fees"),
    ("flight delayed 3 hours and customer service on hold forever", "service"),
    ("they lost my luggage and nobody answers", "service"),
    ("your CEO's statement is offensive, boycott", "statement"),
]


@pytest.mark.parametrize(("text", "expected"), CASES_DE)
def test_german_rules(text, expected):
    assert default_classifier().classify(text, "de") == expected


@pytest.mark.parametrize(("text", "expected"), CASES_EN)
def test_english_rules(text, expected):
    assert default_classifier().classify(text, "en") == expected


@pytest.mark.parametrize(("text", "expected"), [CASES_DE[0], CASES_EN[0], CASES_DE[3], CASES_EN[4]])
def test_unknown_language_uses_every_language(text, expected):
    assert default_classifier().classify(text, None) == expected


def test_no_match_and_no_substring_matches():
    c = default_classifier()
    assert c.classify("what a lovely day at the beach", "en") is None
    assert c.classify("coffee on board was great", "en") is None  # "fee" must not match "coffee"
    assert c.classify("Schönes Wetter heute", "de") is None


def test_most_hits_win_and_ties_go_to_the_type_listed_first():
    types = parse_types([
        {"id": "a", "rules": {"en": ["down"]}},
        {"id": "b", "rules": {"en": ["down", "slow"]}},
    ])
    c = CrisisClassifier(types)
    assert c.classify("down", "en") == "a"
    assert c.classify("down and slow", "en") == "b"


def test_prefix_phrase_and_regex_rules():
    c = CrisisClassifier(parse_types([
        {"id": "x", "rules": {"de": ["störung*"], "any": ["re:err(or)? ?[0-9]{3}"]}},
        {"id": "y", "rules": {"en": ["can't log* in"]}},
    ]))
    assert c.classify("Störungen überall", "de") == "x"
    assert c.classify("got error 503", "fr") == "x"  # "any" holds in every language
    assert c.classify("I can’t LOGIN... in", "en") == "y"  # typographic apostrophe, case, punctuation


@pytest.mark.parametrize(("data", "message"), [
    ([], "non-empty list"),
    ([{"id": "x"}], "rules: expected a mapping"),
    ([{"id": "x", "rules": {"english": ["a"]}}], "not a language code"),
    ([{"id": "x", "rules": {"en": []}}], "expected a list of 1..200 rules"),
    ([{"id": "x", "rules": {"en": ["re:("]}}], "not a valid pattern"),
    ([{"id": "x", "rules": {"en": ["a"]}}, {"id": "x", "rules": {"en": ["b"]}}], "listed twice"),
    ([{"id": "x", "rules": {"en": ["a"]}, "colour": "red"}], "unknown key(s) colour"),
])
def test_config_errors_say_where(data, message):
    with pytest.raises(CrisisConfigError, match=r"^crisis_types") as exc:
        parse_types(data)
    assert message in str(exc.value)


def test_load_types_from_file(tmp_path):
    path = tmp_path / "types.yaml"
    path.write_text("crisis_types:\n  - id: outage\n    rules: {de: [störung]}\n", encoding="utf-8")
    assert [t.id for t in load_types(path)] == ["outage"]
    path.write_text("types: []\n", encoding="utf-8")
    with pytest.raises(CrisisConfigError, match="top-level 'crisis_types:'"):
        load_types(path)
    with pytest.raises(CrisisConfigError, match="cannot read"):
        load_types(tmp_path / "missing.yaml")


def test_default_types_are_the_issue_s_six():
    assert default_classifier().ids == ["security", "fraud", "outage", "fees", "statement", "service"]
