"""Backtests: replay a history through the pipeline's own objects, without Kafka.

``stormwatch backtest`` (docs/analysts.md) reads posts (JSONL/CSV, through
:class:`stormwatch.local.LocalPipeline`) or ready-made counts (CSV, or a NAB folder),
runs one :class:`~stormwatch.detectors.monitor.SeriesMonitor` per series for each
setting, and scores the alerts against labelled incidents (:mod:`.core`); ``--sweep``
compares settings, ``--report DIR`` draws them (:mod:`.report`).
"""
