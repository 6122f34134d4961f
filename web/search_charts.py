"""A search's charts as server-side SVG (no script, so the page's CSP holds and they update with
the summary it refetches): the best so far against cumulative epochs, every trial's validation
curve (pruned ones greyed), parallel coordinates of the hyperparameters against the metric, and
the hyperparameters' importance."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from markupsafe import Markup, escape

from shared.read.models import SearchOut

WIDTH, HEIGHT, PAD = 560, 260, 44
# Distinct hues for complete trials; pruned, failed and cancelled ones are grey.
HUES = ("#2563eb", "#16a34a", "#dc2626", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777")
GREY = "#b8b8b8"


def _scale(low: float, high: float, out_low: float, out_high: float) -> Callable[[float], float]:
    span = (high - low) or 1.0
    return lambda v: out_low + (v - low) / span * (out_high - out_low)


def _frame(title: str, x_label: str, y_label: str, body: list[str], chart_id: str) -> Markup:
    parts = [
        f'<svg id="{chart_id}" class="search-chart" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{escape(title)}">',
        f'<text x="{WIDTH / 2}" y="16" text-anchor="middle" font-size="13">{escape(title)}</text>',
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - 10}" y2="{HEIGHT - PAD}" '
        'stroke="#999"/>',
        f'<line x1="{PAD}" y1="28" x2="{PAD}" y2="{HEIGHT - PAD}" stroke="#999"/>',
        f'<text x="{WIDTH / 2}" y="{HEIGHT - 8}" text-anchor="middle" font-size="11">'
        f"{escape(x_label)}</text>",
        f'<text x="12" y="{HEIGHT / 2}" font-size="11" transform="rotate(-90 12 {HEIGHT / 2})" '
        f'text-anchor="middle">{escape(y_label)}</text>',
        *body,
        "</svg>",
    ]
    return Markup("".join(parts))


def _ticks(low: float, high: float, y: Callable[[float], float]) -> list[str]:
    return [
        f'<text x="{PAD - 4}" y="{y(v) + 4:.1f}" text-anchor="end" font-size="10">{v:.3f}</text>'
        for v in (low, (low + high) / 2, high)
    ]


def _polyline(points: list[tuple[float, float]], colour: str, **attrs: str) -> str:
    extra = "".join(f' {k.replace("_", "-")}="{v}"' for k, v in attrs.items())
    coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    return f'<polyline points="{coords}" fill="none" stroke="{colour}"{extra}/>'


def best_curve(search: SearchOut) -> Markup | None:
    """The best final validation metric so far against the epochs all trials trained."""
    if not search.curve:
        return None
    values = [p.best for p in search.curve]
    low, high = min(values), max(values)
    x = _scale(0, max(search.epochs_trained, 1), PAD, WIDTH - 10)
    y = _scale(low - 0.01, high + 0.01, HEIGHT - PAD, 30)
    points = [(x(p.epochs), y(p.best)) for p in search.curve]
    body = [*_ticks(low, high, y), _polyline(points, HUES[0], stroke_width="2")]
    metric = search.spec["metric"].replace("_", " ")
    return _frame(
        f"Best {metric} so far", "epochs trained by all trials", metric, body, "search-best-curve"
    )


def trial_curves(search: SearchOut) -> Markup | None:
    """Each trial's validation metric by epoch; pruned (and failed) trials in grey."""
    trials = [t for t in search.trial_list if t.reports]
    if not trials:
        return None
    values = [v for t in trials for v in t.reports]
    low, high = min(values), max(values)
    epochs = max(len(t.reports) for t in trials)
    x = _scale(1, max(epochs, 2), PAD, WIDTH - 10)
    y = _scale(low, high, HEIGHT - PAD, 30)
    body = _ticks(low, high, y)
    for t in sorted(trials, key=lambda t: t.status.value == "succeeded"):  # coloured on top
        colour = HUES[t.trial % len(HUES)] if t.status.value == "succeeded" else GREY
        points = [(x(e), y(v)) for e, v in enumerate(t.reports, start=1)]
        if len(points) == 1:
            px, py = points[0]
            body.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2.5" fill="{colour}"/>')
        else:
            body.append(_polyline(points, colour, stroke_width="1.5", data_trial=str(t.trial)))
    metric = search.spec["metric"].replace("_", " ")
    return _frame(
        f"Each trial's {metric} (pruned in grey)", "epoch", metric, body, "search-trial-curves"
    )


def _axis(name: str, spec: dict[str, Any]) -> Callable[[Any], float]:
    """A hyperparameter's values onto [0, 1]: log ranges on a log scale, choices in order."""
    axis = spec["space"][name]
    if "choices" in axis:
        choices = [repr(c) for c in axis["choices"]]
        return lambda v: (choices.index(repr(v)) + 0.5) / len(choices)
    low, high = float(axis["low"]), float(axis["high"])
    if axis.get("log"):
        low, high = math.log(low), math.log(high)
        return lambda v: (math.log(v) - low) / ((high - low) or 1.0)
    return lambda v: (float(v) - low) / ((high - low) or 1.0)


def parallel_coordinates(search: SearchOut) -> Markup | None:
    """One line per trial through its hyperparameters' values and its last metric."""
    trials = [t for t in search.trial_list if t.value is not None]
    names = list(search.spec["space"])
    if not trials or not names:
        return None
    metric = search.spec["metric"]
    columns = [*names, metric]
    x = _scale(0, len(columns) - 1, PAD + 10, WIDTH - 40)
    y = _scale(0, 1, HEIGHT - PAD, 30)
    finals = [t.value for t in trials if t.value is not None]
    low, high = min(finals), max(finals)
    scales = {n: _axis(n, search.spec) for n in names}
    body = []
    for i, column in enumerate(columns):
        body.append(
            f'<line x1="{x(i):.1f}" y1="30" x2="{x(i):.1f}" y2="{HEIGHT - PAD}" stroke="#999"/>'
        )
        body.append(
            f'<text x="{x(i):.1f}" y="{HEIGHT - PAD + 14}" text-anchor="middle" font-size="10">'
            f"{escape(column.replace('_', ' '))}</text>"
        )
    for t in sorted(trials, key=lambda t: t.status.value == "succeeded"):
        fractions = [scales[n](t.params[n]) for n in names if n in t.params]
        fractions.append(((t.value or 0.0) - low) / ((high - low) or 1.0))
        points = [(x(i), y(f)) for i, f in enumerate(fractions)]
        colour = HUES[t.trial % len(HUES)] if t.status.value == "succeeded" else GREY
        body.append(_polyline(points, colour, stroke_width="1.5", data_trial=str(t.trial)))
    return _frame(
        "Parallel coordinates (each trial's last value; pruned in grey)",
        "",
        "low → high",
        body,
        "search-parallel",
    )


def importance_bars(search: SearchOut) -> Markup | None:
    """The hyperparameters' importance as horizontal bars."""
    if not search.importance:
        return None
    rows = list(search.importance.items())
    bar_height, top = 22, 30
    height = top + bar_height * len(rows) + 10
    width = _scale(0, 1, 0, WIDTH - 200)
    parts = [
        f'<svg id="search-importance" class="search-chart" viewBox="0 0 {WIDTH} {height}" '
        f'width="{WIDTH}" height="{height}" role="img" aria-label="hyperparameter importance">',
        f'<text x="{WIDTH / 2}" y="16" text-anchor="middle" font-size="13">'
        "Hyperparameter importance (Optuna, PED-ANOVA)</text>",
    ]
    for i, (name, score) in enumerate(rows):
        y0 = top + i * bar_height
        parts.append(
            f'<text x="140" y="{y0 + 15}" text-anchor="end" font-size="11">{escape(name)}</text>'
            f'<rect x="150" y="{y0 + 4}" width="{width(score):.1f}" height="{bar_height - 8}" '
            f'fill="{HUES[0]}"/><text x="{156 + width(score):.1f}" y="{y0 + 15}" '
            f'font-size="10">{score:.2f}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def search_charts(search: SearchOut | None) -> dict[str, Markup | None]:
    """Every chart of a search's page (None where there is nothing to draw yet)."""
    if search is None:
        return {}
    return {
        "best": best_curve(search),
        "trials": trial_curves(search),
        "parallel": parallel_coordinates(search),
        "importance": importance_bars(search),
    }
