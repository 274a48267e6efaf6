"""``stormwatch sentiment train``: fit a small head on labelled posts, save it as JSON.

The encoder stays frozen; texts are embedded once (cached on disk in
``$STORMWATCH_CACHE/embeddings``) and a softmax regression or a one-hidden-layer MLP
is fitted with class-balanced cross-entropy. Use the result with
``make("e5", head="path/to/head.json")``.

The command that reproduces the shipped default head is in ``heads/README.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stormwatch.config import cache_dir
from stormwatch.nlp.data import Example, read_labelled, remove_overlap
from stormwatch.nlp.heads import LABELS, Head

log = logging.getLogger(__name__)


class EmbeddingCache:
    """Text → embedding memory on disk, one folder per encoder setting, so heads can be
    re-fitted on any subset of posts without encoding them again.

    Stored as ``part-*.npz`` files (sha1 of each text, float32 vectors); new texts go to
    a new part file.
    """

    def __init__(self, encoder: Any, root: Path | None = None) -> None:
        sig = json.dumps([Path(encoder.path).name, encoder.prefix, encoder.max_length,
                          getattr(encoder, "quant", "fp32")])
        self.encoder = encoder
        self.folder = (root or cache_dir() / "embeddings") / hashlib.sha1(sig.encode()).hexdigest()[:16]
        self._index: dict[str, np.ndarray] = {}
        if self.folder.exists():
            for part in sorted(self.folder.glob("part-*.npz")):
                with np.load(part) as z:
                    self._index.update(zip(z["keys"].tolist(), z["vectors"], strict=True))

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()

    def add(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        keys = [self.key(t) for t in texts]
        self._index.update(zip(keys, vectors, strict=True))
        self.folder.mkdir(parents=True, exist_ok=True)
        n = len(list(self.folder.glob("part-*.npz")))
        np.savez(self.folder / f"part-{n:05d}.npz", keys=np.array(keys), vectors=vectors)

    def embed(self, texts: Sequence[str], chunk: int = 512) -> np.ndarray:
        """Embeddings of ``texts``, encoding only the ones not cached yet."""
        keys = [self.key(t) for t in texts]
        missing = sorted({k: t for k, t in zip(keys, texts, strict=True) if k not in self._index}.items())
        todo = [t for _, t in missing]
        for i in range(0, len(todo), chunk):
            part = todo[i:i + chunk]
            self.add(part, self.encoder.embed(part))
            print(f"  embedded {min(i + chunk, len(todo))}/{len(todo)} new texts", file=sys.stderr,
                  flush=True)
        if not keys:
            return np.zeros((0, self.encoder.dim), np.float32)
        return np.stack([self._index[k] for k in keys]).astype(np.float32)


def embed_cached(encoder: Any, texts: Sequence[str]) -> np.ndarray:
    """``encoder.embed(texts)`` through the on-disk :class:`EmbeddingCache`."""
    return EmbeddingCache(encoder).embed(texts)


def fit_head(x: np.ndarray, y: Sequence[str], kind: str = "linear", hidden: int = 64,
             epochs: int = 100, lr: float = 0.01, weight_decay: float = 1e-3,
             balanced: bool = True, seed: int = 0, name: str = "head") -> Head:
    """Fit a head with full-batch AdamW on class-balanced cross-entropy."""
    import torch

    labels = [lab for lab in LABELS if lab in set(y)]
    if len(labels) < 2:
        raise ValueError("training data needs at least two sentiment classes")
    index = {lab: i for i, lab in enumerate(labels)}
    xt = torch.tensor(np.asarray(x), dtype=torch.float32)
    yt = torch.tensor([index[v] for v in y], dtype=torch.long)
    counts = torch.bincount(yt, minlength=len(labels)).float()
    weight = (counts.sum() / (len(labels) * counts)) if balanced else None
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    dim = xt.shape[1]
    if kind == "linear":
        net = torch.nn.Sequential(torch.nn.Linear(dim, len(labels)))
    elif kind == "mlp":
        net = torch.nn.Sequential(torch.nn.Linear(dim, hidden), torch.nn.ReLU(),
                                  torch.nn.Dropout(0.2), torch.nn.Linear(hidden, len(labels)))
    else:
        raise ValueError(f"unknown head kind {kind!r} (linear or mlp)")
    # inputs are unit vectors with small coordinates: standardise inside the first layer
    mean, std = xt.mean(0), xt.std(0).clamp(min=1e-6)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = torch.nn.CrossEntropyLoss(weight=weight)
    net.train()
    for _ in range(epochs):
        perm = torch.randperm(len(yt), generator=g)
        for i in range(0, len(perm), 1024):
            idx = perm[i:i + 1024]
            opt.zero_grad()
            loss = loss_fn(net((xt[idx] - mean) / std), yt[idx])
            loss.backward()
            opt.step()
    net.eval()
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    weights = [m.weight.detach().numpy().T.copy() for m in linears]
    biases = [m.bias.detach().numpy().copy() for m in linears]
    # fold the standardisation into the first layer: ((x - mean) / std) W = x (W/std) - (mean/std) W
    w0 = weights[0] / std.numpy()[:, None]
    biases[0] = biases[0] - (mean.numpy() / std.numpy()) @ weights[0]
    weights[0] = w0
    return Head(kind=kind, labels=labels, weights=weights, biases=biases, name=name)


def split_weight(ref: str) -> tuple[str, int]:
    """``FILE*N`` → (FILE, N): the file's rows count N times in training.

    >>> split_weight("seed.tsv*5"), split_weight("a.jsonl[0:0.5]")
    (('seed.tsv', 5), ('a.jsonl[0:0.5]', 1))
    """
    head, sep, tail = ref.rpartition("*")
    if sep and tail.isdigit() and int(tail) >= 1:
        return head, int(tail)
    return ref, 1


def load_training(refs: Sequence[str], exclude: Sequence[str]) -> tuple[list[Example], dict[str, Any]]:
    """Read the training files and drop every post whose text is also in ``exclude``."""
    train: list[Example] = []
    per_file = {}
    for ref in refs:
        path, times = split_weight(ref)
        rows = read_labelled(path)
        per_file[ref] = len(rows)
        train += rows * times
    removed_by: dict[str, int] = {}
    for ref in exclude:
        texts = [ex.text for ex in read_labelled(ref, require_label=False)]
        train, removed = remove_overlap(train, texts)
        removed_by[ref] = removed
    return train, {"files": per_file, "overlap_removed": removed_by, "kept": len(train)}


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from stormwatch.nlp.transformer import E5Scorer

    train, info = load_training(args.data, args.exclude or [])
    for ref, n in info["files"].items():
        print(f"read {n} labelled posts from {ref}", file=sys.stderr)
    for ref, n in info["overlap_removed"].items():
        print(f"removed {n} training posts that also occur in {ref}", file=sys.stderr)
    if not train:
        print("no labelled posts to train on", file=sys.stderr)
        return 2
    scorer = E5Scorer(model=args.model, head=None, int8=args.int8, max_length=args.max_length,
                      layers=getattr(args, "layers", None))
    x = embed_cached(scorer.encoder, [ex.text for ex in train])
    y = [ex.label for ex in train]
    head = fit_head(x, y, kind=args.kind, hidden=args.hidden, epochs=args.epochs,
                    seed=args.seed, name=args.name or Path(args.out).stem)
    counts = {lab: y.count(lab) for lab in LABELS}
    head.meta = {
        "trained": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "encoder": scorer.encoder.path.split("/")[-1] + "-" + scorer.encoder.quant,
        "data": [Path(r).name for r in args.data], "exclude": [Path(r).name for r in args.exclude or []],
        "overlap_removed": {Path(k).name: v for k, v in info["overlap_removed"].items()},
        "examples": len(y), "class_counts": counts, "kind": args.kind, "hidden": args.hidden,
        "epochs": args.epochs, "seed": args.seed,
    }
    out = head.save(args.out)
    print(f"saved head {head.name!r} ({out.stat().st_size} bytes) to {out}", file=sys.stderr)
    print(json.dumps({"out": str(out), **head.meta}))
    return 0
