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
    Worker(app, loglevel=args.loglevel, quiet=True).execute_from_commandline()
    return 0
