"""``stormwatch bench fuzz``: coverage-guided fuzzing (atheris) of the code that reads hostile input.

Each target is a function of raw bytes that must either accept the input or reject it
with the project's own error carrying a reason and a message; any other exception is a
crash, and atheris stops there and prints the input. The contracts are plain functions,
so the property tests (``tests/test_hostile_input.py``) check exactly the same thing on
every CI build, and the fuzzer pushes the same check to millions of inputs::

    stormwatch bench fuzz --target post --runs 1000000

The run starts from a small seed corpus of valid and nearly valid records (written to a
temporary folder) so that mutations reach the field checks, not only the JSON parser.
At the end it prints one JSON line: inputs run, accepted, rejected per reason, seconds.

>>> check_post(b'{"id": "1", "created_at": 1424653323, "channel": "tw", "brand": "A", "text": "hi"}')
'accepted'
>>> check_post(b'{"id": "1"}')
'missing_field'
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from stormwatch.model import REASONS, InvalidRecord, ScoredPost, Sentiment, dumps, parse_post

#: A fixed clock for the parser, so "more than a day ahead" does not depend on the day.
NOW = 1.8e9


def check_post(raw: bytes | str | dict) -> str:
    """The post parser's contract on one input; returns ``accepted`` or the reason code.

    Accepted posts must serialise as UTF-8 JSON (as every stage writes them) and parse
    back to the same post; rejections must carry a known reason and a message.
    """
    try:
        post = parse_post(raw, now=NOW)
    except InvalidRecord as exc:
        if exc.reason not in REASONS or not exc.detail or not str(exc).startswith(exc.reason + ": "):
            raise AssertionError(f"rejection without a known reason and message: {exc!r}") from exc
        return exc.reason
    wire = dumps(ScoredPost(post, Sentiment("neutral", 0.5, 0.1, "fuzz")))
    wire.decode("utf-8")
    again = parse_post(json.loads(wire)["post"], now=NOW)
    if again != post:
        raise AssertionError(f"post does not round-trip: {post!r} != {again!r}")
    return "accepted"


#: Target name -> (contract, seed inputs).
TARGETS: dict[str, tuple[Callable[[bytes], str], list[bytes]]] = {
    "post": (check_post, [
        json.dumps({"id": "p1", "created_at": "2015-02-23T01:02:03Z", "channel": "twitter",
                    "brand": "United", "text": "flight Cancelled Flightled \U0001F621", "lang": "en",
                    "author": "@x", "retweets": 3}).encode(),
        json.dumps({"id": "p2", "created_at": 1424653323.5, "channel": "rss", "brand": "Bank",
                    "text": "App geht nicht \u200b\u202e", "lang": "de"}, ensure_ascii=False).encode(),
        b'{"id": "p3", "created_at": "2015-02-30T00:00:00Z", "channel": "t", "brand": "B", "text": ""}',
        b'{"id": "p4", "created_at": null, "text": "\\ud800"}',
        b'[[[[{"id": 1}]]]]',
    ]),
}


def run(target: str, runs: int, seconds: int | None = None) -> dict:
    """Fuzz ``target`` for ``runs`` inputs (or ``seconds``); returns the summary."""
    import atheris  # the fuzzer is a benchmark tool: imported only here

    contract, seeds = TARGETS[target]
    outcomes: Counter[str] = Counter()
    started = time.monotonic()

    def summary() -> dict:
        n = sum(outcomes.values())
        return {"target": target, "inputs": n, "accepted": outcomes["accepted"],
                "rejected": {k: v for k, v in sorted(outcomes.items()) if k != "accepted"},
                "crashes": 0, "seconds": round(time.monotonic() - started, 1)}

    def one_input(data: bytes) -> None:
        outcomes[contract(data)] += 1
        n = sum(outcomes.values())
        if n % 100_000 == 0:
            print(f"fuzz {target}: {n:,} inputs, {time.monotonic() - started:.0f} s", file=sys.stderr)
        if n == runs:  # libFuzzer exits right after its last run: report now
            print(json.dumps(summary()), flush=True)

    corpus = Path(tempfile.mkdtemp(prefix=f"stormwatch-fuzz-{target}-"))
    for i, seed in enumerate(seeds):
        (corpus / f"seed{i}").write_bytes(seed)
    argv = [sys.argv[0], f"-runs={runs}", "-max_len=4096", f"-artifact_prefix={corpus}/",
            str(corpus)]
    if seconds:
        argv.append(f"-max_total_time={seconds}")
    atheris.instrument_all()
    atheris.Setup(argv, one_input)
    atheris.Fuzz()
    return summary()  # reached only if libFuzzer returns instead of exiting


def main(args: argparse.Namespace) -> int:
    if args.target not in TARGETS:
        print(f"stormwatch bench fuzz: unknown target {args.target!r}; known: {', '.join(TARGETS)}",
              file=sys.stderr)
        return 2
    try:
        import atheris  # noqa: F401
    except ImportError:
        print("stormwatch bench fuzz needs atheris: pip install atheris", file=sys.stderr)
        return 2
    print(json.dumps(run(args.target, args.runs, args.seconds)))
    return 0
