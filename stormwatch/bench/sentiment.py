"""``stormwatch bench sentiment``: accuracy, macro-F1 per language and posts/s of a scorer.

Posts are fed to ``Scorer.score`` in micro-batches of ``--batch`` in file order (as a
stream would). Model loading is not timed. Language per post comes from
:mod:`stormwatch.nlp.lang` (or the file's ``lang`` column). The last line printed is
one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from stormwatch.nlp.data import Example, accuracy, macro_f1, read_labelled


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_scorer(args: argparse.Namespace) -> Any:
    import stormwatch.nlp  # noqa: F401  (registers the scorers)
    from stormwatch.nlp.base import make

    options: dict[str, Any] = {}
    if args.scorer in {"e5", "hf"}:
        if args.model:
            options["model"] = args.model
        if args.int8 is not None:
            options["int8"] = args.int8
        if args.threads:
            options["threads"] = args.threads
        for key in ("sort_by_length", "dedupe"):
            value = getattr(args, key, None)
            if value is not None and not (args.scorer == "hf" and key == "sort_by_length"):
                options[key] = value
    if args.scorer == "e5" and args.head:
        options["head"] = args.head
    if args.scorer == "e5" and getattr(args, "layers", None):
        options["layers"] = args.layers
    return make(args.scorer, **options)


def run(examples: list[Example], scorer: Any, batch: int, lang_mode: str) -> dict[str, Any]:
    from stormwatch.nlp.lang import detect_many

    texts = [ex.text for ex in examples]
    t0 = time.perf_counter()
    langs = detect_many(texts) if lang_mode == "detect" else [ex.lang for ex in examples]
    t_lang = time.perf_counter() - t0
    preds = []
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(0, len(texts), batch):
        preds += scorer.score(texts[i:i + batch], langs[i:i + batch])
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    by_lang: dict[str, list[int]] = defaultdict(list)
    for i, lang in enumerate(langs):
        by_lang[lang or "unknown"].append(i)
    gold = [ex.label or "" for ex in examples]
    labels = [p.label for p in preds]
    per_lang = {}
    for lang, idx in sorted(by_lang.items(), key=lambda kv: -len(kv[1])):
        g, p = [gold[i] for i in idx], [labels[i] for i in idx]
        per_lang[lang] = {"n": len(idx), "accuracy": round(accuracy(g, p), 4),
                          "macro_f1": round(macro_f1(g, p), 4)}
    return {"n": len(texts), "accuracy": round(accuracy(gold, labels), 4),
            "macro_f1": round(macro_f1(gold, labels), 4), "per_lang": per_lang,
            "posts_per_s": round(len(texts) / elapsed, 1), "seconds": round(elapsed, 2),
            # CPU seconds used by this process: posts per CPU-second x cores is what the
            # scorer would do alone on the machine, whatever else runs beside it
            "cpu_seconds": round(cpu, 2), "posts_per_cpu_s": round(len(texts) / max(cpu, 1e-9), 1),
            "lang_posts_per_s": round(len(texts) / max(t_lang, 1e-9), 1),
            "model": preds[0].model if preds else None}


def main(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    scorer = build_scorer(args)
    load_s = time.perf_counter() - t0
    results: dict[str, Any] = {"scorer": args.scorer, "batch": args.batch, "load_s": round(load_s, 1),
                               "files": {}}
    for ref in args.data:
        examples = read_labelled(ref)[:args.limit] if args.limit else read_labelled(ref)
        r = run(examples, scorer, args.batch, args.lang)
        results["files"][Path(ref).name] = r
        print(f"{ref}: {r['n']} posts, accuracy {r['accuracy']:.3f}, macro-F1 {r['macro_f1']:.3f}, "
              f"{r['posts_per_s']:.1f} posts/s, {r['posts_per_cpu_s']:.1f} posts per CPU-second "
              f"({r['model']})")
        for lang, m in r["per_lang"].items():
            print(f"  {lang:8s} n={m['n']:5d}  accuracy {m['accuracy']:.3f}  macro-F1 {m['macro_f1']:.3f}")
    results["peak_rss_mb"] = round(peak_rss_mb(), 1)
    print(f"peak memory {results['peak_rss_mb']:.0f} MiB", file=sys.stderr)
    print(json.dumps(results))
    return 0
