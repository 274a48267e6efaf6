"""``--report DIR``: an HTML page and PNG plots per series, and the sweep curve.

Per series (the configured setting): volume with the detector's expected band, the
negative share (posts only), the detector score with the
threshold; alerts (red) and labelled incidents (orange bands) marked on every panel.
Needs matplotlib (the ``report`` extra).
"""

from __future__ import annotations

import bisect
import html
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stormwatch.backtest import core

if TYPE_CHECKING:
    from stormwatch.backtest.run import Run

__all__ = ["plot_series", "plot_sweep", "write"]

ALERT = "#d62728"
INCIDENT = "#ff9f1c"
VOLUME = "#1f4e79"
BAND = "#9ecae1"


def _mpl() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("--report needs matplotlib: pip install 'stormwatch[report]'") from None
    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    return plt, mdates


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_") or "series"


#: Labelled incidents drawn up close under the overview (at most), with this much time either side.
MAX_ZOOMS = 4
ZOOM_PAD = 3 * 3600.0
ZOOM_POINTS = 80
#: The negative share is pooled over this many seconds.
SHARE_SECONDS = 2 * 3600
#: The overview plots at most this many points per series; buckets are summed into groups.
POINTS = 700
_NICE = (1, 2, 3, 5, 10, 15, 20, 30, 60, 120, 180, 360, 720, 1440)


def group_size(n: int, bucket_seconds: int, points: int = POINTS) -> int:
    """Buckets per plotted point: a round duration, so that ``n`` buckets give at most ``points``.

    >>> group_size(10_000, 60), group_size(4032, 300), group_size(500, 60)
    (15, 6, 1)
    """
    need = math.ceil(n / points)
    for minutes in _NICE:
        k = max(1, round(minutes * 60 / bucket_seconds))
        if k >= need:
            return k
    return need


@dataclass
class Grouped:
    """A trace summed into groups of ``k`` buckets: volume and band add up (spreads in quadrature),
    the negative share is pooled, the score is the group's highest."""

    k: int
    x: list[datetime]
    count: list[float]
    expected: list[float]
    lower: list[float]
    upper: list[float]
    share: list[float]
    score: list[float]


def group(tr: core.Trace, k: int) -> Grouped:
    g = Grouped(k, [], [], [], [], [], [], [])
    nan = math.nan
    for i in range(0, len(tr.t), k):
        sl = slice(i, i + k)
        counts = tr.count[sl]
        exp = [e for e in tr.expected[sl] if e is not None]
        ups = [(u - e) / 3.0 for u, e in zip(tr.upper[sl], tr.expected[sl], strict=True)
               if u is not None and e is not None]
        total = sum(counts)
        g.x.append(datetime.fromtimestamp(tr.t[i], UTC))
        g.count.append(total)
        if exp and len(exp) == len(counts):
            e, sd = sum(exp), math.sqrt(sum(v * v for v in ups))
            g.expected.append(e)
            g.lower.append(max(0.0, e - 3 * sd))
            g.upper.append(e + 3 * sd)
        else:
            g.expected.append(nan)
            g.lower.append(nan)
            g.upper.append(nan)
        g.share.append(sum((s or 0.0) * c for s, c in zip(tr.negative_share[sl], counts, strict=True)))
        sc = [v for v in tr.score[sl] if v is not None]
        g.score.append(max(sc) if sc else nan)
    # the negative share pooled over the last SHARE_SECONDS (shares of a few posts are noise)
    w = max(1, round(SHARE_SECONDS / (k * tr.bucket_seconds)))
    negs, share = g.share, []
    for i in range(len(negs)):
        n, c = sum(negs[max(0, i - w + 1):i + 1]), sum(g.count[max(0, i - w + 1):i + 1])
        share.append(n / c if c else nan)
    g.share = share
    return g


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:g} h" if seconds >= 3600 else f"{seconds / 60:g} min"


def plot_series(tr: core.Trace, result: core.SeriesResult, path: Path, sentiment: bool) -> None:
    """One PNG: volume + band, negative share (if ``sentiment``), score + threshold."""
    plt, mdates = _mpl()
    g = group(tr, group_size(len(tr.t), tr.bucket_seconds))
    per = _duration(g.k * tr.bucket_seconds)
    rows = 3 if sentiment else 2
    zooms = result.incidents[:MAX_ZOOMS]
    fig = plt.figure(figsize=(12, 2.2 * rows + 1.0 + (2.6 if zooms else 0.0)))
    outer = fig.add_gridspec(2 if zooms else 1, 1, height_ratios=[2.2 * rows, 2.0] if zooms else [1],
                             hspace=0.22)
    top = outer[0].subgridspec(rows, 1, height_ratios=[2.2, 1, 1][:rows], hspace=0.08)
    axes = [fig.add_subplot(top[0])]
    axes += [fig.add_subplot(top[i], sharex=axes[0]) for i in range(1, rows)]
    for ax in axes[:-1]:
        ax.tick_params(labelbottom=False)
    vol = axes[0]
    vol.fill_between(g.x, g.lower, g.upper, color=BAND, alpha=0.7, linewidth=0, step="post",
                     label="expected band (±3 spreads)")
    vol.plot(g.x, g.expected, color="#555555", linewidth=0.9, linestyle="--", drawstyle="steps-post",
             label="expected")
    vol.plot(g.x, g.count, color=VOLUME, linewidth=1.0, drawstyle="steps-post",
             label=f"{'posts' if sentiment else 'value'} per {per}")
    vol.set_ylabel(f"volume per {per}")
    vol.set_ylim(bottom=0)
    score_ax = axes[-1]
    score_ax.plot(g.x, g.score, color="#444444", linewidth=0.8, drawstyle="steps-post",
                  label=f"detector score (max per {per})")
    score_ax.axhline(tr.threshold, color=ALERT, linestyle="--", linewidth=1.0,
                     label=f"threshold {tr.threshold:g}")
    score_ax.set_ylim(-0.03, 1.05)
    score_ax.set_ylabel("score")
    if sentiment:
        share = axes[1]
        share.plot(g.x, g.share, color="#8c2d04", linewidth=0.9, drawstyle="steps-post",
                   label=f"negative share (last {_duration(max(SHARE_SECONDS, g.k * tr.bucket_seconds))})")
        share.set_ylim(0, 1.05)
        share.set_ylabel("negative share")
    for i, inc in enumerate(result.incidents):
        for ax in axes:
            ax.axvspan(datetime.fromtimestamp(inc.start, UTC), datetime.fromtimestamp(inc.end, UTC),
                       color=INCIDENT, alpha=0.35, linewidth=0, label="labelled incident" if i == 0 else None)
    for j, a in enumerate(tr.opened):
        for ax in axes:
            ax.axvline(a.at, color=ALERT, linewidth=1.3, alpha=0.9, label="alert" if j == 0 else None)
        vol.annotate(a.at.strftime("%d %H:%M"), (a.at, 1.0), xycoords=("data", "axes fraction"), color=ALERT,
                     fontsize=8, ha="left", va="top", xytext=(3, -3 - 10 * (j % 2)),
                     textcoords="offset points")
    for ax in axes:
        ax.grid(True, alpha=0.25)
        ax.margins(x=0.005)
    vol.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8, framealpha=0.9)
    for ax in axes[1:]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8, framealpha=0.9)
    loc = mdates.AutoDateLocator(tz=UTC, minticks=6, maxticks=14)
    score_ax.xaxis.set_major_locator(loc)
    score_ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(loc, tz=UTC))
    delays = ", ".join("missed" if d is None else f"{d / 60:.0f} min" for d in result.delays) or "no labels"
    nab = "" if math.isnan(result.nab_score) else f" · NAB {result.nab_score:.1f}"
    fig.suptitle(f"{tr.series}: {result.alerts} alert(s), {result.false_alerts} outside incidents · "
                 f"detection delay: {delays}{nab}  (times UTC)", fontsize=11, x=0.01, ha="left")
    if zooms:
        bottom = outer[1].subgridspec(1, len(zooms), wspace=0.25)
        for i, inc in enumerate(zooms):
            _zoom(fig.add_subplot(bottom[i]), tr, inc, result.delays[i], mdates, len(zooms))
    fig.subplots_adjust(left=0.06, right=0.79, top=0.93 if zooms else 0.9, bottom=0.05 if zooms else 0.08)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _zoom(ax: Any, tr: core.Trace, inc: core.Incident, delay: float | None, mdates: Any, n: int) -> None:
    """One labelled incident up close: volume per bucket with the band, the incident, the alerts."""
    pad = max(ZOOM_PAD, (inc.end - inc.start) / 2)
    lo, hi = bisect.bisect_left(tr.t, inc.start - pad), bisect.bisect_right(tr.t, inc.end + pad)
    sub = core.Trace(tr.series, tr.bucket_seconds, tr.t[lo:hi], tr.count[lo:hi], tr.negative_share[lo:hi],
                     tr.score[lo:hi], tr.expected[lo:hi], tr.lower[lo:hi], tr.upper[lo:hi])
    if not sub.t:
        return
    g = group(sub, group_size(len(sub.t), tr.bucket_seconds, ZOOM_POINTS))
    ax.fill_between(g.x, g.lower, g.upper, color=BAND, alpha=0.7, linewidth=0, step="post")
    ax.plot(g.x, g.expected, color="#555555", linewidth=0.8, linestyle="--", drawstyle="steps-post")
    ax.plot(g.x, g.count, color=VOLUME, linewidth=1.0, drawstyle="steps-post")
    ax.axvspan(datetime.fromtimestamp(inc.start, UTC), datetime.fromtimestamp(inc.end, UTC), color=INCIDENT,
               alpha=0.35, linewidth=0)
    for a in tr.opened:
        if g.x[0].timestamp() <= a.at.timestamp() <= g.x[-1].timestamp() + tr.bucket_seconds * g.k:
            ax.axvline(a.at, color=ALERT, linewidth=1.3)
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.25)
    ax.margins(x=0)
    loc = mdates.AutoDateLocator(tz=UTC, minticks=2, maxticks=6 if n <= 2 else 4)
    ax.xaxis.set_major_locator(loc)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(loc, tz=UTC))
    ax.tick_params(labelsize=8)
    per = _duration(g.k * tr.bucket_seconds)
    start = datetime.fromtimestamp(inc.start, UTC).strftime("%m-%d %H:%M")
    what = "missed" if delay is None else f"alert after {delay / 60:.0f} min"
    ax.set_title(f"incident {start}\n{what}", fontsize=9, color=ALERT if delay is None else "#222222")
    if ax.get_subplotspec().colspan.start == 0:
        ax.set_ylabel(f"volume per {per}", fontsize=8)


def _short(setting: str) -> str:
    return setting.replace("threshold ", "t=")


def _place_labels(ax: Any, points: Sequence[tuple[float, float, str]]) -> None:
    """Label points without overlaps where possible: try four offsets per label, keep the first
    whose (estimated) box is clear of the labels and points placed so far."""
    ax.figure.canvas.draw()
    to_px = ax.transData.transform
    taken = [(px - 4, py - 4, px + 4, py + 4) for px, py in (to_px((x, y)) for x, y, _ in points)]
    scale = ax.figure.dpi / 72.0
    for x, y, text in points:
        px, py = to_px((x, y))
        lines = text.split("\n")
        w = max(len(t) for t in lines) * 4.8 * scale
        h = 10.0 * len(lines) * scale
        choice = None
        for dx, dy, ha, va in ((6, 4, "left", "bottom"), (6, -4, "left", "top"), (-6, 4, "right", "bottom"),
                               (-6, -4, "right", "top"), (6, 14, "left", "bottom"), (6, -14, "left", "top")):
            x0 = px + dx * scale if ha == "left" else px + dx * scale - w
            y0 = py + dy * scale if va == "bottom" else py + dy * scale - h
            box = (x0, y0, x0 + w, y0 + h)
            if not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in taken):
                choice = (dx, dy, ha, va, box)
                break
        if choice is None:
            choice = (6, 4, "left", "bottom", (px, py, px + w, py + h))
        dx, dy, ha, va, box = choice
        taken.append(box)
        ax.annotate(text, (x, y), fontsize=8, xytext=(dx, dy), textcoords="offset points", ha=ha, va=va,
                    annotation_clip=False)


def plot_sweep(runs: Sequence[Run], best: int | None, path: Path, profile: str) -> None:
    """Alerts per week against recall and against the median delay, one point per setting."""
    plt, _ = _mpl()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.8))
    xs = [r.summary.alerts_per_week for r in runs]
    rec = [100 * r.summary.recall if r.summary.incidents else math.nan for r in runs]
    dl = [math.nan if r.summary.median_delay_min is None else r.summary.median_delay_min for r in runs]
    span = max(xs) - min(xs) or max(1.0, max(xs))
    for ax, ys, label in ((a1, rec, "recall (% of labelled incidents)"), (a2, dl, "median delay (min)")):
        ax.plot(xs, ys, "o", color=VOLUME, zorder=3)
        if best is not None and ys[best] == ys[best]:
            ax.scatter([xs[best]], [ys[best]], s=220, facecolors="none", edgecolors=ALERT, linewidths=2,
                       zorder=4)
        ax.set_xlim(min(xs) - 0.1 * span, max(xs) + 0.25 * span)
        ok = [y for y in ys if y == y]
        if ax is a1:
            ax.set_ylim(-5, 112)  # recall: always the whole scale
        elif ok:
            pad = (max(ok) - min(ok)) * 0.12 or 5.0
            ax.set_ylim(min(ok) - pad, max(ok) + pad)
        ax.set_xlabel("alerts per week (all series)")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        at: dict[tuple[float, float], list[str]] = {}  # settings with the same outcome share a label
        for i, r in enumerate(runs):
            if ys[i] == ys[i]:
                at.setdefault((round(xs[i], 2), round(ys[i], 1)), []).append(_short(r.summary.setting))
        _place_labels(ax, [(x, y, "\n".join(", ".join(n[k:k + 3]) for k in range(0, len(n), 3)))
                           for (x, y), n in sorted(at.items())])
    title = "sweep: what each setting would have done (t = threshold)"
    if best is not None:
        b = runs[best].summary
        title += f";  red circle: best for {profile}, {b.setting} (NAB {b.nab:.1f})"
    fig.suptitle(title, x=0.01, ha="left", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], mark: int | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        f"<tr{' class=best' if i == mark else ''}>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row)
        + "</tr>" for i, row in enumerate(rows))
    return f"<table><tr>{head}</tr>{body}</table>"


def _f(x: float | None, spec: str = ".1f") -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def write(out: Path, runs: Sequence[Run], best: int | None, sentiment: bool, command: str = "",
          profile: str = "standard") -> Path:
    """Write ``out/index.html``, ``out/<series>.png`` (configured setting) and ``out/sweep.png``."""
    out.mkdir(parents=True, exist_ok=True)
    run = runs[0]
    parts = [f"<h1>stormwatch backtest</h1><p><code>{html.escape(command)}</code></p>"]
    s = run.summary
    parts.append(f"<h2>Configured setting</h2><p>{s.incidents} labelled incidents, {s.detected} detected, "
                 f"median delay {_f(s.median_delay_min, '.0f')} min, {s.alerts_per_week:.1f} alerts/week, "
                 f"{s.false_per_week:.1f} false/week, NAB ({profile}) {_f(s.nab)}</p>")
    rows = [[r.series, r.alerts, _f(r.false_per_week), len(r.delays), r.missed,
             ", ".join("missed" if d is None else f"{d / 60:.0f} min" for d in r.delays) or "–",
             _f(r.nab_score)] for r in run.results]
    parts.append(_table(["series", "alerts", "false/week", "incidents", "missed", "delays", "NAB"], rows))
    if len(runs) > 1:
        plot_sweep(runs, best, out / "sweep.png", profile)
        rows = [[r.summary.setting, _f(r.summary.alerts_per_week), _f(r.summary.false_per_week),
                 _f(100 * r.summary.recall, ".0f") + "%" if r.summary.incidents else "–",
                 _f(r.summary.median_delay_min, ".0f"), _f(r.summary.nab)] for r in runs]
        parts.append("<h2>Sweep</h2><img src='sweep.png' alt='sweep'>"
                     + _table(["setting", "alerts/week", "false/week", "recall", "median delay (min)",
                               f"NAB ({profile})"], rows, best))
    parts.append("<h2>Series</h2>")
    for r in run.results:
        name = f"{_slug(r.series)}.png"
        plot_series(run.traces[r.series], r, out / name, sentiment)
        parts.append(f"<h3>{html.escape(r.series)}</h3><img src='{name}' alt='{html.escape(r.series)}'>")
    style = ("body{font-family:sans-serif;max-width:1150px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
             "text-align:right}td:first-child,th:first-child{text-align:left}tr.best{background:#ffe9b3;"
             "font-weight:bold}img{max-width:100%}")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>stormwatch backtest</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
