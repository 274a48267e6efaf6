"""Small classification heads on top of sentence embeddings, stored as JSON.

A head maps an L2-normalised embedding to P(negative), P(neutral), P(positive). Two
kinds: ``linear`` (softmax regression) and ``mlp`` (one hidden ReLU layer). The
default head, ``default.json`` in this folder, is described in ``README.md`` here.

>>> import numpy as np
>>> h = Head(kind="linear", labels=["negative", "neutral", "positive"],
...          weights=[np.eye(3)], biases=[np.zeros(3)])
>>> h.predict_proba(np.array([[5.0, 0.0, 0.0]])).round(3).tolist()
[[0.987, 0.007, 0.007]]
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HEADS_DIR = Path(__file__).resolve().parent
LABELS = ("negative", "neutral", "positive")


@dataclass
class Head:
    """Softmax regression (``linear``) or one-hidden-layer ReLU net (``mlp``), numpy only."""

    kind: str
    labels: list[str]
    weights: list[np.ndarray]  # (in, out) per layer
    biases: list[np.ndarray]
    name: str = "head"
    meta: dict[str, Any] = field(default_factory=dict)

    def logits(self, x: np.ndarray) -> np.ndarray:
        h = np.asarray(x, dtype=np.float32)
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = h @ w + b
            if i < len(self.weights) - 1:
                h = np.maximum(h, 0.0)
        return h

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        z = self.logits(x)
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def to_json(self) -> dict[str, Any]:
        return {"format": "stormwatch-head-1", "kind": self.kind, "name": self.name,
                "labels": list(self.labels),
                "layers": [{"w": np.round(w, 6).tolist(), "b": np.round(b, 6).tolist()}
                           for w, b in zip(self.weights, self.biases, strict=True)],
                "meta": self.meta}

    def save(self, path: str | os.PathLike[str]) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), separators=(",", ":")))
        return path

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Head:
        if data.get("format") != "stormwatch-head-1":
            raise ValueError("not a stormwatch head file (format != stormwatch-head-1)")
        labels = list(data["labels"])
        unknown = set(labels) - set(LABELS)
        if unknown:
            raise ValueError(f"head labels must be among {LABELS}, got {sorted(unknown)}")
        layers = data["layers"]
        return cls(kind=data["kind"], labels=labels, name=data.get("name", "head"),
                   weights=[np.asarray(layer["w"], dtype=np.float32) for layer in layers],
                   biases=[np.asarray(layer["b"], dtype=np.float32) for layer in layers],
                   meta=data.get("meta", {}))

    @classmethod
    def load(cls, ref: str | os.PathLike[str]) -> Head:
        """Load a head by path, or by name from this folder (``"default"``)."""
        path = Path(ref)
        if not path.suffix and not path.exists():
            path = HEADS_DIR / f"{ref}.json"
        if not path.exists():
            raise FileNotFoundError(f"sentiment head not found: {ref}")
        return cls.from_json(json.loads(path.read_text()))
