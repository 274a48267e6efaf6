"""Settings from the environment, validated once, with clear errors.

Every runtime (worker, connectors, local runner, tests) reads the same
:class:`Settings`, so a real cluster is used by setting ``STORMWATCH_KAFKA``.

>>> s = Settings.from_env({"STORMWATCH_PARTITIONS": "4", "STORMWATCH_TOPIC_PREFIX": "t1."})
>>> s.partitions, s.topic("posts.raw")
(4, 't1.posts.raw')
>>> Settings.from_env({"STORMWATCH_PARTITIONS": "zero"})
Traceback (most recent call last):
...
ValueError: STORMWATCH_PARTITIONS must be an integer >= 1, got 'zero'
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stormwatch.detectors.policy import PolicyConfig

REPO_ROOT = Path(__file__).resolve().parent.parent

#: seasonal-baseline's memories count buckets: NAB's defaults are for 5-minute data,
#: these keep the same memory in time for 1-minute buckets. The alert policy does the
#: cooldown, so the detector's own is off.
MINUTE_BUCKET_PARAMS: Mapping[str, Any] = {"alpha": 0.0002, "season_alpha": 0.01, "warmup": 120,
                                           "cooldown": 0.0}


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {raw!r}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be 1/true/yes/on or 0/false/no/off, got {env[name]!r}")


@dataclass(frozen=True)
class Settings:
    """Runtime settings. Each field's environment variable is ``STORMWATCH_<FIELD>``."""

    kafka: str = "127.0.0.1:9092"
    app_id: str = "stormwatch"
    topic_prefix: str = ""
    partitions: int = 8
    guarantee: str = "at_least_once"
    state_dir: str = "var/faust"
    scorer: str = "e5"  # the offline transformer (docs/sentiment.md); "lexicon": rule-based
    scorer_batch: int = 256
    scorer_within: float = 0.5
    #: aggregate and detect take up to this many records (or what arrives within
    #: stage_within seconds) per Kafka round trip
    stage_batch: int = 500
    stage_within: float = 0.05
    bucket_seconds: int = 60
    lateness_seconds: int = 120
    detector: str = "seasonal-baseline"
    detector_params: Mapping[str, Any] = field(default_factory=lambda: dict(MINUTE_BUCKET_PARAMS))
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    author_salt: str = ""
    session_timeout: float = 30.0
    delivery_timeout: float = 120.0
    max_poll_interval: float = 300.0
    plugins: tuple[str, ...] = ()
    watch: str = ""  # watch config file (brands, queries, presets, routing); empty: none
    watch_poll: float = 5.0  # seconds between checks of the watch config file for changes
    metrics_port: int = 0
    metrics_host: str = "127.0.0.1"
    metrics_lag_interval: float = 15.0
    #: seconds a partition of this worker may hold records without a commit before it
    #: counts as stalled (0: not watched); read every metrics_lag_interval
    stall_seconds: float = 600.0
    #: a stalled worker exits (code 75) so its supervisor restarts it; off: it only logs
    stall_exit: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        d = cls()
        guarantee = env.get("STORMWATCH_GUARANTEE", d.guarantee)
        if guarantee not in ("exactly_once", "at_least_once"):
            raise ValueError(f"STORMWATCH_GUARANTEE must be exactly_once or at_least_once, got {guarantee!r}")
        params_raw = env.get("STORMWATCH_DETECTOR_PARAMS", "")
        try:
            detector = env.get("STORMWATCH_DETECTOR", d.detector)
            default = dict(d.detector_params) if detector == d.detector else {}
            params = json.loads(params_raw) if params_raw else default
        except json.JSONDecodeError as exc:
            raise ValueError(f"STORMWATCH_DETECTOR_PARAMS is not JSON: {exc.msg}") from None
        if not isinstance(params, dict):
            raise ValueError("STORMWATCH_DETECTOR_PARAMS must be a JSON object")
        return cls(
            kafka=env.get("STORMWATCH_KAFKA", d.kafka),
            app_id=env.get("STORMWATCH_APP_ID", d.app_id),
            topic_prefix=env.get("STORMWATCH_TOPIC_PREFIX", d.topic_prefix),
            partitions=_int(env, "STORMWATCH_PARTITIONS", d.partitions, 1),
            guarantee=guarantee,
            state_dir=env.get("STORMWATCH_STATE_DIR", d.state_dir),
            scorer=env.get("STORMWATCH_SCORER", d.scorer),
            scorer_batch=_int(env, "STORMWATCH_SCORER_BATCH", d.scorer_batch, 1),
            scorer_within=_float(env, "STORMWATCH_SCORER_WITHIN", d.scorer_within),
            stage_batch=_int(env, "STORMWATCH_STAGE_BATCH", d.stage_batch, 1),
            stage_within=_float(env, "STORMWATCH_STAGE_WITHIN", d.stage_within),
            bucket_seconds=_int(env, "STORMWATCH_BUCKET_SECONDS", d.bucket_seconds, 1),
            lateness_seconds=_int(env, "STORMWATCH_LATENESS_SECONDS", d.lateness_seconds, 0),
            detector=detector,
            detector_params=params,
            author_salt=_secret(env, "STORMWATCH_AUTHOR_SALT"),
            session_timeout=_float(env, "STORMWATCH_SESSION_TIMEOUT", d.session_timeout),
            delivery_timeout=_float(env, "STORMWATCH_DELIVERY_TIMEOUT", d.delivery_timeout),
            max_poll_interval=_float(env, "STORMWATCH_MAX_POLL_INTERVAL", d.max_poll_interval),
            watch=env.get("STORMWATCH_WATCH", d.watch),
            watch_poll=_float(env, "STORMWATCH_WATCH_POLL", d.watch_poll),
            plugins=tuple(m.strip() for m in env.get("STORMWATCH_PLUGINS", "").split(",") if m.strip()),
            metrics_port=_int(env, "STORMWATCH_METRICS_PORT", d.metrics_port, 0),
            metrics_host=env.get("STORMWATCH_METRICS_HOST", d.metrics_host),
            metrics_lag_interval=_float(env, "STORMWATCH_METRICS_LAG_INTERVAL", d.metrics_lag_interval),
            stall_seconds=_float(env, "STORMWATCH_STALL_SECONDS", d.stall_seconds),
            stall_exit=_bool(env, "STORMWATCH_STALL_EXIT", d.stall_exit),
        )

    def topic(self, name: str) -> str:
        """The full name of one of the project's topics (with the test prefix, if any)."""
        return f"{self.topic_prefix}{name}"

    def __repr__(self) -> str:  # never print the salt
        return f"Settings(kafka={self.kafka!r}, app_id={self.app_id!r}, prefix={self.topic_prefix!r})"


def _secret(env: Mapping[str, str], name: str) -> str:
    """A secret from ``NAME`` or from the file named by ``NAME_FILE``."""
    path = env.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(f"{name}_FILE: cannot read {path!r}: {exc.strerror}") from None
    return env.get(name, "")


def data_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where the shared data sets live (tests and benchmarks only): ``STORMWATCH_DATA``,
    else ``../shared/data`` beside the repository. It may not exist: callers say so."""
    env = os.environ if env is None else env
    value = env.get("STORMWATCH_DATA")
    return Path(value).expanduser() if value else REPO_ROOT.parent / "shared" / "data"


def cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """Converted models and cached embeddings: ``STORMWATCH_CACHE``, else
    ``~/.cache/stormwatch`` (never inside a commit; not created here).

    >>> str(cache_dir({"STORMWATCH_CACHE": "/tmp/sw-cache"}))
    '/tmp/sw-cache'
    """
    env = os.environ if env is None else env
    value = env.get("STORMWATCH_CACHE")
    return Path(value).expanduser() if value else Path.home() / ".cache" / "stormwatch"
