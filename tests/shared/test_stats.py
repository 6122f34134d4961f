"""The statistics of a study, checked against formulas written out here."""

from __future__ import annotations

import math
import statistics

import pytest
from scipy import stats as scipy_stats

from shared.domain.stats import describe, verdict, welch

NORMALIZED = [0.9764, 0.9799, 0.9771, 0.9780]
RAW = [0.9265, 0.9365, 0.9301, 0.9339]


def test_describe_gives_mean_sample_std_and_the_t_interval() -> None:
    summary = describe(NORMALIZED)
    mean, std = statistics.mean(NORMALIZED), statistics.stdev(NORMALIZED)
    half = 3.182446305284263 * std / 2  # t(0.975, 3) * s / sqrt(4)
    assert summary.n == 4
    assert summary.mean == pytest.approx(mean) and summary.std == pytest.approx(std)
    assert summary.ci95 == pytest.approx((mean - half, mean + half))


@pytest.mark.parametrize(("values", "n"), [([], 0), ([0.9], 1)])
def test_describe_says_only_what_n_allows(values: list[float], n: int) -> None:
    summary = describe(values)
    assert summary.n == n and summary.std is None and summary.ci95 is None
    assert (summary.mean is None) == (n == 0)


def test_welch_matches_the_formula() -> None:
    result = welch(RAW, NORMALIZED)
    va, vb = statistics.variance(RAW) / 4, statistics.variance(NORMALIZED) / 4
    difference = statistics.mean(RAW) - statistics.mean(NORMALIZED)
    t = difference / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / 3 + vb**2 / 3)  # Welch-Satterthwaite
    p = 2 * scipy_stats.t.sf(abs(t), df)
    half = scipy_stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    assert result.difference == pytest.approx(difference)
    assert result.p_value == pytest.approx(p)
    assert result.ci95 == pytest.approx((difference - half, difference + half))
    assert result.shown


def test_welch_with_too_few_runs_or_no_spread() -> None:
    assert welch([0.9], [0.8, 0.85]).p_value is None
    assert welch([], [0.8]).difference is None
    exact = welch([0.9, 0.9], [0.8, 0.8])
    assert exact.p_value == 0.0 and exact.ci95 == pytest.approx((0.1, 0.1))


def test_verdicts_in_plain_words() -> None:
    shown = verdict("raw pixels", "test_accuracy", welch(RAW, NORMALIZED))
    assert shown.startswith("raw pixels: test accuracy -4.6 points, 95% CI [-5.3, -3.9]")
    assert shown.endswith("p < 0.001, n = 4 each")
    noise = verdict("seed only", "test_accuracy", welch(NORMALIZED[:2], NORMALIZED[2:]))
    assert noise.startswith("seed only: no difference shown at n = 2 each")
    early = verdict("raw pixels", "test_accuracy", welch(RAW[:1], NORMALIZED))
    assert "not enough finished runs" in early and "n = 1 vs 4" in early
