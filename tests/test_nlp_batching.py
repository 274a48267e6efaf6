"""Micro-batching helpers, language detection and heads: no torch needed."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from stormwatch.nlp.batching import MicroBatcher, TextCache, dedupe, length_batches
from stormwatch.nlp.data import bucket, macro_f1, read_labelled, remove_overlap
from stormwatch.nlp.heads import Head


def test_length_batches_cover_every_index_once_and_cut_padding() -> None:
    rng = random.Random(1)
    lengths = [rng.randint(5, 120) for _ in range(1000)]
    batches = length_batches(lengths, batch_size=64)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(1000))
    assert all(len(b) <= 64 for b in batches)
    padded_sorted = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    padded_plain = sum(64 * max(lengths[i:i + 64]) for i in range(0, 1000, 64))
    assert padded_sorted < 0.7 * padded_plain
    assert sum(lengths) / padded_sorted > 0.9  # little padding left


def test_length_batches_respect_the_token_budget() -> None:
    lengths = [10] * 10 + [100] * 3
    for b in length_batches(lengths, batch_size=64, max_tokens=200):
        assert len(b) * max(lengths[i] for i in b) <= 200
    assert length_batches([], 8) == []
    with pytest.raises(ValueError):
        length_batches([1], 0)


def test_dedupe_round_trips() -> None:
    texts = ["RT a", "b", "RT a", "c", "b"]
    uniq, inverse = dedupe(texts)
    assert uniq == ["RT a", "b", "c"] and [uniq[j] for j in inverse] == texts


def test_micro_batcher_flushes_by_size_and_age() -> None:
    now = [0.0]
    b: MicroBatcher[int] = MicroBatcher(size=3, max_wait=1.0, clock=lambda: now[0])
    assert b.add(1) is None and b.add(2) is None
    assert b.add(3) == [1, 2, 3] and len(b) == 0
    b.add(4)
    now[0] = 0.5
    assert not b.due()
    now[0] = 1.5
    assert b.due() and b.flush() == [4] and not b.due()


def test_text_cache_is_bounded() -> None:
    c: TextCache[int] = TextCache(maxsize=100)
    for i in range(250):
        c.put(str(i), i)
    assert len(c) == 100 and c.get("249") == 249 and c.get("0") is None
    assert (c.hits, c.misses) == (1, 1)
    off: TextCache[int] = TextCache(maxsize=0)
    off.put("a", 1)
    assert off.get("a") is None


def test_head_json_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    h = Head(kind="mlp", labels=["negative", "neutral", "positive"], name="t",
             weights=[rng.normal(size=(4, 5)).astype(np.float32), rng.normal(size=(5, 3)).astype(np.float32)],
             biases=[np.zeros(5, np.float32), np.zeros(3, np.float32)])
    x = rng.normal(size=(7, 4)).astype(np.float32)
    back = Head.load(h.save(tmp_path / "h.json"))
    np.testing.assert_allclose(back.predict_proba(x), h.predict_proba(x), atol=1e-5)
    np.testing.assert_allclose(back.predict_proba(x).sum(1), 1.0, atol=1e-6)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError):
        Head.load(bad)


def test_default_head_ships_with_the_package() -> None:
    h = Head.load("default")
    assert h.labels == ["negative", "neutral", "positive"] and h.weights[0].shape == (384, 3)
    assert h.meta["data"] == ["train.anon.tsv", "seed_en.tsv*5"] and h.meta["overlap_removed"]


def test_read_labelled_slices_and_overlap(tmp_path: Path) -> None:
    f = tmp_path / "p.jsonl"
    rows = [{"id": f"id{i}", "text": f"post {i}", "label_sentiment": "negative" if i % 2 else "positive"}
            for i in range(200)]
    rows.append({"id": "x", "text": "no label", "label_sentiment": "mixed"})
    f.write_text("\n".join(json.dumps(r) for r in rows))
    a, b = read_labelled(f"{f}[0:0.5]"), read_labelled(f"{f}[0.5:1]")
    assert len(a) + len(b) == 200 and not {e.id for e in a} & {e.id for e in b}
    assert all(bucket(e.id) < 0.5 for e in a)
    kept, removed = remove_overlap(a, ["RT @user: POST 3!!"] + [e.text for e in b])
    # "RT @user: POST 3!!" normalises to "post 3"; texts of the other half are not in this one
    assert removed == int(any(e.text == "post 3" for e in a)) and len(kept) == len(a) - removed
    kept, removed = remove_overlap(a, [e.text for e in a[:5]])
    assert removed == 5 and kept == a[5:]
    csv_file = tmp_path / "p.csv"
    csv_file.write_text('text,sentiment\n"Great, thanks",positive\nmeh,neutral\n')
    assert [(e.text, e.label) for e in read_labelled(str(csv_file))] == [("Great, thanks", "positive"),
                                                                         ("meh", "neutral")]
    assert macro_f1(["a", "b"], ["a", "b"]) == 1.0


def test_language_detection_on_short_posts() -> None:
    pytest.importorskip("py3langid", reason="py3langid not installed (pip install 'stormwatch[nlp]')")
    from stormwatch.nlp.lang import detect, detect_many, detect_with_confidence

    assert detect_many(["Mein Zug fällt schon wieder aus", "@united where is my bag?", "😡😡", ""]) == [
        "de", "en", None, None]
    lang, prob = detect_with_confidence("Vielen Dank für die schnelle Hilfe!")
    assert lang == "de" and prob > 0.9
    assert detect("Merci beaucoup pour votre aide rapide") == "fr"
