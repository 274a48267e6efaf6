"""The one command-line entry point: ``stormwatch <command> ...``.

Each command's work lives in its own module; this file only declares the arguments
and imports the module when the command runs (Faust and torch load slowly).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

Handler = Callable[[argparse.Namespace], int]


def _lazy(target: str) -> Handler:
    """A handler that imports ``module:function`` only when called."""

    def run(args: argparse.Namespace) -> int:
        import importlib

        module, func = target.split(":")
        return int(getattr(importlib.import_module(module), func)(args) or 0)

    return run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stormwatch",
        description="Streaming social listening and crisis early warning.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("replay", help="run the pipeline in-process over a file (no Kafka)")
    p.add_argument("file", help="posts as JSONL or CSV")
    p.add_argument("--scorer", default=None, help="sentiment scorer (default: settings)")
    p.add_argument("--quiet", action="store_true", help="print only the summary table")
    p.add_argument("--flush", action="store_true",
                   help="close the still-open buckets at the end of the file")
    p.set_defaults(func=_lazy("stormwatch.local:main"))

    p = sub.add_parser("worker", help="run the Faust stream worker (needs Kafka)")
    p.add_argument("--loglevel", default="warn", choices=["crit", "error", "warn", "info", "debug"])
    p.set_defaults(func=_lazy("stormwatch.app.worker:main"))

    p = sub.add_parser("topics", help="create the topics (idempotent) and list them")
    p.set_defaults(func=_lazy("stormwatch.app.topics:main"))

    ingest = sub.add_parser("ingest", help="connectors that produce posts to Kafka")
    isub = ingest.add_subparsers(dest="source", metavar="SOURCE", required=True)
    p = isub.add_parser("replay", help="replay a JSONL/CSV file of posts into posts.raw")
    p.add_argument("file")
    p.add_argument("--speed", type=float, default=0.0,
                   help="event-time speed-up (60 = one hour per minute); 0 = as fast as possible")
    p.add_argument("--limit", type=int, default=None, help="stop after this many lines")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.set_defaults(func=_lazy("stormwatch.ingest.replay:main"))

    def brand_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--brand", action="append", metavar="NAME",
                       help="brand the posts are about (repeatable)")
        p.add_argument("--track", action="append", metavar="KW1,KW2",
                       help="keywords of the i-th --brand: a post goes to every brand whose keywords "
                            "it contains (none: every post)")

    def live_options(p: argparse.ArgumentParser) -> None:
        brand_options(p)
        p.add_argument("--state", default=None, help="state file: cursor and recent ids, for resuming")
        p.add_argument("--max-posts", type=int, default=None, help="stop after this many posts")
        p.add_argument("--dry-run", action="store_true", help="print posts as JSON lines, no Kafka")

    p = isub.add_parser("webhook", help="HTTP endpoint: POST /posts with JSON posts (token or HMAC)")
    brand_options(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 in a container)")
    p.add_argument("--port", type=int, default=8088)
    p.add_argument("--max-body", type=int, default=4 * 1024 * 1024, help="largest body in bytes")
    p.add_argument("--max-records", type=int, default=1000, help="most posts per request")
    p.add_argument("--rate", type=float, default=20.0, help="requests per second per client")
    p.add_argument("--burst", type=int, default=40, help="requests at once per client")
    p.add_argument("--anonymous", action="store_true", help="accept unauthenticated posts (tests only)")
    p.set_defaults(func=_lazy("stormwatch.ingest.webhook:main"))

    p = isub.add_parser("rss", help="poll RSS/Atom feeds (news, app-store reviews) with ETag/Last-Modified")
    p.add_argument("url", nargs="+", help="feed URLs")
    p.add_argument("--channel", default="news", help="channel of the posts (news, appstore, ...)")
    p.add_argument("--interval", type=float, default=300.0, help="seconds between polls of a feed")
    live_options(p)
    p.set_defaults(func=_lazy("stormwatch.ingest.rss:main"))

    p = isub.add_parser("mastodon", help="a Mastodon streaming timeline (public, hashtag or list)")
    p.add_argument("--server", required=True, help="instance base URL, e.g. https://mastodon.example")
    p.add_argument("--timeline", default="public",
                   help="public, public:local, hashtag:TAG or list:ID; token (optional, a list needs one): "
                        "STORMWATCH_MASTODON_TOKEN or _FILE")
    live_options(p)
    p.set_defaults(func=_lazy("stormwatch.ingest.mastodon:main"))

    p = isub.add_parser("bluesky", help="Bluesky posts from a Jetstream websocket")
    p.add_argument("--url", required=True, help="Jetstream subscribe URL, e.g. wss://HOST/subscribe")
    p.add_argument("--did", action="append", help="only posts of this account DID (repeatable)")
    p.add_argument("--rewind", type=float, default=5.0,
                   help="seconds to rewind the cursor on reconnect (Jetstream's advice; repeats are dropped)")
    live_options(p)
    p.set_defaults(func=_lazy("stormwatch.ingest.bluesky:main"))

    p = sub.add_parser("lag", help="the worker's consumer lag per input topic")
    p.add_argument("--wait", action="store_true", help="wait until the worker has caught up")
    p.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds")
    p.set_defaults(func=_lazy("stormwatch.app.lag:main"))

    p = sub.add_parser("alerts", help="read the alerts topic and print alerts as JSON lines; "
                                      "ack / resolve an alert through the API")
    p.add_argument("--timeout", type=float, default=10.0,
                   help="stop after this many seconds without a new alert")
    p.set_defaults(func=_lazy("stormwatch.sinks.console:main"))
    asub = p.add_subparsers(dest="action", metavar="ACTION", required=False)
    for action, text in (("ack", "acknowledge an alert (stops its re-sending)"),
                         ("resolve", "resolve an alert by hand")):
        a = asub.add_parser(action, help=text + " via the API (STORMWATCH_API_URL, STORMWATCH_API_TOKEN)")
        a.add_argument("id", help="the alert id, e.g. 'US Airways/*@2015-02-22T22:22Z'")
        a.add_argument("--by", default=None, help="who (default: the login name)")
        a.add_argument("--note", default=None, help="a note for the incident's history")
        a.set_defaults(func=_lazy("stormwatch.api.client:main"))

    p = sub.add_parser("api", help="the HTTP API: alerts, evidence, ack/resolve, impact, playbooks")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.set_defaults(func=_lazy("stormwatch.api.server:main"))

    p = sub.add_parser("backtest", help="replay a history (posts or counts) and score the alerts (no Kafka)")
    p.add_argument("input", help="posts (JSONL/CSV), counts (CSV: timestamp,value[,series]) or a NAB folder")
    p.add_argument("--labels", default=None,
                   help="incidents as JSON: [{series, start, end}] or NAB windows "
                        "(a NAB folder brings its own)")
    p.add_argument("--watch", default=None, help="watch config (default: $STORMWATCH_WATCH)")
    p.add_argument("--preset", default=None, help="fewer | balanced | more, without a watch config")
    p.add_argument("--threshold", type=float, default=None, help="detector score threshold for every series")
    p.add_argument("--sweep", nargs="?", const="", default=None, metavar="SETTINGS",
                   help="compare settings: presets and thresholds, e.g. 'fewer,more,0.9' "
                        "(no value: three presets and seven thresholds)")
    p.add_argument("--profile", default="standard", choices=["standard", "reward_low_FP_rate",
                                                             "reward_low_FN_rate"],
                   help="NAB profile that picks the best setting of a sweep")
    p.add_argument("--report", default=None, metavar="DIR", help="write DIR/index.html and PNG plots")
    p.add_argument("--only", default=None, help="only the series whose name contains this")
    p.add_argument("--counts", action="store_true", help="read INPUT as counts even if it has a text column")
    p.add_argument("--scorer", default=None, help="sentiment scorer (default: settings)")
    p.add_argument("--no-cache", action="store_true", help="do not use the sentiment cache")
    p.add_argument("--detector", default=None, help="volume detector (default: settings / the product's)")
    p.add_argument("--params", default=None, help="detector parameters as JSON")
    p.add_argument("--progress", action="store_true",
                   help="show the progress bar even when not on a terminal")
    p.set_defaults(func=_lazy("stormwatch.backtest.run:main"))

    watch = sub.add_parser("watch", help="the watch config (brands, queries, presets, routing)")
    wsub = watch.add_subparsers(dest="watch", metavar="ACTION", required=True)
    p = wsub.add_parser("check", help="validate a watch config and print its settings per series")
    p.add_argument("file")
    p.set_defaults(func=_lazy("stormwatch.watch:check_main"))

    p = sub.add_parser("page", help="push every alert state change to Alertmanager (paging)")
    p.add_argument("--alertmanager", required=True, metavar="URL", help="Alertmanager base URL")
    p.add_argument("--resend", type=float, default=60.0,
                   help="seconds between re-sends of the firing alerts (default 60)")
    p.add_argument("--evidence-url", default=None, metavar="URL",
                   help="base URL of a worker's HTTP server, for the evidence link of each page")
    p.set_defaults(func=_lazy("stormwatch.sinks.alertmanager:main"))

    dash = sub.add_parser("dashboards", help="Grafana dashboards as code")
    dsub = dash.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = dsub.add_parser("build", help="write the dashboards' JSON to dashboards/ (or --out)")
    p.add_argument("--out", default=None, help="folder (default: the repository's dashboards/)")
    p.set_defaults(func=_lazy("stormwatch.sinks.grafana:build_main"))
    p = dsub.add_parser("push", help="upload the dashboards and the alert annotations to Grafana")
    p.add_argument("--url", required=True, help="Grafana base URL")
    p.add_argument("--token", default=None, help="API token (default: $GRAFANA_TOKEN)")
    p.add_argument("--no-annotations", action="store_true", help="dashboards only")
    p.add_argument("--timeout", type=float, default=5.0,
                   help="stop reading the alerts topic after this many quiet seconds")
    p.set_defaults(func=_lazy("stormwatch.sinks.grafana:push_main"))

    bench = sub.add_parser("bench", help="benchmarks")
    bsub = bench.add_subparsers(dest="bench", metavar="BENCH", required=True)
    p = bsub.add_parser("pipeline", help="time a file through the pipeline (local or through Kafka)")
    p.add_argument("file")
    p.add_argument("--mode", choices=["local", "kafka"], default="kafka")
    p.add_argument("--partitions", type=int, default=8)
    p.add_argument("--workers", type=int, default=1, help="kafka mode: worker processes in the group")
    p.add_argument("--scorer", default=None,
                   help="sentiment scorer (default: settings); 'none' does no work, to show the overhead")
    p.add_argument("--timeout", type=float, default=900.0)
    p.add_argument("--span", type=float, default=None, metavar="SECONDS",
                   help="first squeeze the event times into this many seconds (a dense stream)")
    p.add_argument("--worker-cpus", default=None, metavar="LIST",
                   help="kafka mode: run the workers on these CPUs (e.g. 0 or 0-1) and this process "
                        "(replay, lag reads) on the others, as on separate machines")
    p.set_defaults(func=_lazy("stormwatch.bench.pipeline:main"))

    p = bsub.add_parser("nab", help="run a detector over the NAB corpus and score it (3 profiles)")
    p.add_argument("--data", default=None,
                   help="NAB directory with data/ and labels/ (default: $STORMWATCH_DATA/nab)")
    p.add_argument("--results", default=None, help="write OUT/<category>/<file>.csv with the scores")
    p.add_argument("--detector", default=None,
                   help="registered detector name (default: the product's volume detector)")
    p.add_argument("--params", default=None, help="detector parameters as JSON (default: its defaults)")
    p.add_argument("--half", choices=["even", "odd"], default=None,
                   help="only every other file in sorted order (carry-over checks)")
    p.add_argument("--rescore", default=None, metavar="RESULTS",
                   help="score the CSVs a previous --results run wrote instead of running a detector")
    p.set_defaults(func=_lazy("stormwatch.bench.nab_cli:main"))

    p = bsub.add_parser("profile", help="one brand's posts per hour: level, busiest minutes, peak test")
    p.add_argument("file", help="posts as JSONL or CSV (labels in label_sentiment are used if present)")
    p.add_argument("--brand", required=True)
    p.add_argument("--start", default=None, help="ISO 8601 or epoch seconds (inclusive)")
    p.add_argument("--end", default=None, help="ISO 8601 or epoch seconds (exclusive)")
    p.set_defaults(func=_lazy("stormwatch.bench.profile:main"))

    p = bsub.add_parser("detector-speed", help="updates/s of one detector on one core")
    p.add_argument("--detector", default=None, help="registered detector name (default: the product's)")
    p.add_argument("--params", default=None, help="detector parameters as JSON")
    p.add_argument("--n", type=int, default=300_000, help="updates per run")
    p.add_argument("--repeat", type=int, default=3, help="runs; the best one is reported")
    p.set_defaults(func=_lazy("stormwatch.bench.nab_cli:speed"))

    p = bsub.add_parser("soak", help="overload the worker (x capacity) for a while, then recover")
    p.add_argument("--capacity", type=float, default=None,
                   help="worker capacity in posts/s (default: measured first with a burst)")
    p.add_argument("--burst", type=int, default=20_000, help="posts of the capacity burst")
    p.add_argument("--factor", type=float, default=1.5, help="overload rate as a multiple of capacity")
    p.add_argument("--minutes", type=float, default=10.0, help="length of the overload phase")
    p.add_argument("--recover-minutes", type=float, default=3.0, help="then half capacity this long")
    p.add_argument("--drain-timeout", type=float, default=900.0, help="seconds allowed to catch up")
    p.add_argument("--brands", type=int, default=8)
    p.add_argument("--partitions", type=int, default=8)
    p.add_argument("--every", type=float, default=5.0, help="seconds between memory/lag samples")
    p.add_argument("--texts", choices=["repeat", "varied"], default="repeat",
                   help="6 texts over and over, or 102,102 distinct ones (every post a model pass)")
    p.set_defaults(func=_lazy("stormwatch.bench.soak:main"))

    p = bsub.add_parser("fuzz", help="coverage-guided fuzzing of the input parsers (atheris)")
    p.add_argument("--target", default="post",
                   help="what to fuzz: post, watch, webhook, mastodon, bluesky, rss, api")
    p.add_argument("--runs", type=int, default=1_000_000, help="inputs to run")
    p.add_argument("--seconds", type=int, default=None, help="stop after this many seconds")
    p.set_defaults(func=_lazy("stormwatch.bench.fuzz:main"))

    p = bsub.add_parser("sentiment", help="accuracy, macro-F1 per language and posts/s of a scorer")
    p.add_argument("--data", action="append", required=True,
                   help="labelled file, repeatable; FILE[a:b] takes a hash slice of its rows")
    p.add_argument("--scorer", default="e5", help="registered scorer name (e5, hf, lexicon)")
    p.add_argument("--model", default=None, help="model folder or id (e5: encoder, hf: classifier)")
    p.add_argument("--head", default=None, help="e5 head: name or JSON path (default: default)")
    p.add_argument("--int8", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--batch", type=int, default=64, help="posts per score() call")
    p.add_argument("--limit", type=int, default=None, help="use the first N posts of each file")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--lang", choices=["detect", "file"], default="detect",
                   help="language per post: detected (default) or the file's lang column")
    p.add_argument("--sort-by-length", action=argparse.BooleanOptionalAction, default=None,
                   help="length-sorted batches inside the scorer (default: on)")
    p.add_argument("--layers", type=int, default=None,
                   help="e5: only the first N encoder layers (needs a head fitted for it)")
    p.add_argument("--dedupe", action=argparse.BooleanOptionalAction, default=None,
                   help="score identical texts once (default: on)")
    p.set_defaults(func=_lazy("stormwatch.bench.sentiment:main"))

    sentiment = sub.add_parser("sentiment", help="sentiment models")
    ssub = sentiment.add_subparsers(dest="sentiment", metavar="ACTION", required=True)
    p = ssub.add_parser("train", help="fit a sentiment head on labelled posts (TSV/CSV/JSONL)")
    p.add_argument("--data", action="append", required=True,
                   help="labelled file, repeatable; FILE[a:b] takes a hash slice of its rows, "
                        "FILE*N counts its rows N times")
    p.add_argument("--exclude", action="append",
                   help="evaluation file(s): training posts with the same text are removed")
    p.add_argument("--out", required=True, help="where to write the head (JSON)")
    p.add_argument("--name", default=None, help="head name recorded on posts (default: file stem)")
    p.add_argument("--kind", default="linear", choices=["linear", "mlp"])
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default=None, help="encoder folder (default: the offline e5-small)")
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--int8", action=argparse.BooleanOptionalAction, default=False,
                   help="embed with the int8 encoder (default: fp32)")
    p.add_argument("--layers", type=int, default=None,
                   help="use only the first N encoder layers (the faster variant)")
    p.set_defaults(func=_lazy("stormwatch.nlp.train:main"))

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
