"""The statistics of a study: a configuration's figures over its seeds, and whether two
configurations differ by more than the noise between seeds (Welch's t-test, scipy.stats)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats

LEVEL = 0.95  # of every interval
ALPHA = 1 - LEVEL  # a difference is "shown" when p < ALPHA (the interval then excludes 0)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class Summary:
    """A metric over one configuration's finished runs."""

    n: int
    mean: float | None
    std: float | None  # sample standard deviation (n - 1)
    ci95: tuple[float, float] | None  # Student's t interval of the mean

    def as_dict(self) -> dict[str, object]:
        return {"n": self.n, "mean": self.mean, "std": self.std, "ci95": _pair(self.ci95)}


def _pair(interval: tuple[float, float] | None) -> list[float] | None:
    return None if interval is None else [interval[0], interval[1]]


def describe(values: list[float]) -> Summary:
    """Mean, standard deviation and the 95% interval of the mean; what n allows."""
    n = len(values)
    if n == 0:
        return Summary(0, None, None, None)
    mean = sum(values) / n
    if n == 1:
        return Summary(1, mean, None, None)
    # Equal values have no spread at all (scipy would warn about precision instead).
    std = 0.0 if max(values) == min(values) else float(stats.tstd(values))
    half = stats.t.ppf(1 - ALPHA / 2, n - 1) * std / math.sqrt(n)
    return Summary(n, mean, std, (mean - half, mean + half))


@dataclass(frozen=True)
class Comparison:
    """A configuration against the baseline: the difference of means and Welch's test of it."""

    difference: float | None  # mean(config) - mean(baseline)
    ci95: tuple[float, float] | None
    p_value: float | None
    n: int
    n_baseline: int

    @property
    def shown(self) -> bool:
        """Whether the difference is larger than the noise at the 95% level."""
        return self.p_value is not None and self.p_value < ALPHA

    def as_dict(self) -> dict[str, object]:
        return {
            "difference": self.difference,
            "ci95": _pair(self.ci95),
            "p_value": self.p_value,
            "n": self.n,
            "n_baseline": self.n_baseline,
        }


def welch(values: list[float], baseline: list[float]) -> Comparison:
    """Welch's unequal-variance t-test of mean(values) - mean(baseline), with its 95% interval.

    Needs two runs on each side; with no spread at all on either side, the difference is exact
    (p 0 when the means differ, 1 when they are equal) and its interval a point.
    """
    n, m = len(values), len(baseline)
    if n == 0 or m == 0:
        return Comparison(None, None, None, n, m)
    difference = sum(values) / n - sum(baseline) / m
    if n < 2 or m < 2:
        return Comparison(difference, None, None, n, m)
    if max(values) == min(values) and max(baseline) == min(baseline):
        exact = 0.0 if difference != 0 else 1.0
        return Comparison(difference, (difference, difference), exact, n, m)
    test = stats.ttest_ind(values, baseline, equal_var=False)
    interval = test.confidence_interval(LEVEL)
    return Comparison(
        difference,
        (float(interval.low), float(interval.high)),
        _finite(float(test.pvalue)),
        n,
        m,
    )


def verdict(label: str, metric: str, comparison: Comparison, points: bool = True) -> str:
    """The comparison in plain words, e.g. "raw pixels: test accuracy -4.5 points, 95% CI
    [-4.9, -4.1], p < 0.001, n = 4 each", or "raw pixels: no difference shown at n = 4"."""
    name = metric.replace("_", " ")
    n = comparison.n if comparison.n == comparison.n_baseline else None
    sizes = f"n = {n} each" if n is not None else f"n = {comparison.n} vs {comparison.n_baseline}"
    if comparison.difference is None or comparison.p_value is None or comparison.ci95 is None:
        return f"{label}: not enough finished runs to compare yet ({sizes})"
    if not comparison.shown:
        return f"{label}: no difference shown at {sizes} (p = {comparison.p_value:.2f})"
    scale, unit = (100.0, " points") if points else (1.0, "")
    low, high = (value * scale for value in comparison.ci95)
    p = "p < 0.001" if comparison.p_value < 0.001 else f"p = {comparison.p_value:.3f}"
    return (
        f"{label}: {name} {comparison.difference * scale:+.1f}{unit}, "
        f"95% CI [{low:+.1f}, {high:+.1f}], {p}, {sizes}"
    )
