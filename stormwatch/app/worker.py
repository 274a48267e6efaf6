"""``stormwatch worker``: create the topics, then run the Faust worker until stopped."""

from __future__ import annotations

import argparse
import asyncio
import sys

from stormwatch.app.topics import ensure_topics
from stormwatch.config import Settings


def main(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    try:
        asyncio.run(ensure_topics(settings, tables=True))
    except Exception as exc:
        print(f"stormwatch worker: cannot prepare topics on {settings.kafka}: {exc!r}", file=sys.stderr)
        return 1
    from pathlib import Path

    from faust.worker import Worker

    from stormwatch.app.stream import create_app

    Path(settings.state_dir).mkdir(parents=True, exist_ok=True)
    app = create_app(settings)
    worker = Worker(app, loglevel=args.loglevel, quiet=True)
    # Faust's progress spinner sets the root logger to DEBUG (its handler shows every
    # record): every debug call of aiokafka and Faust then builds a log record that the
    # console handler throws away, about 8% of the worker's time. No spinner, so the
    # root logger stays at --loglevel.
    worker.spinner = None
    worker.execute_from_commandline()
    return 0
