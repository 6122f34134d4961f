"""A study's design: grids, random samples, replicates, and the checks on them."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from shared.domain.errors import InvalidParams
from shared.domain.study_design import StudyRequest, expand


def test_a_grid_is_every_combination_in_order_times_the_seeds() -> None:
    request = StudyRequest(
        grid={"optimizer": ["adam", "sgd"], "normalize": [True, False]}, seeds=3, params={}
    )
    configs, runs = expand(request, first_seed=10, max_runs=200)
    assert request.varied() == ["optimizer", "normalize"]
    assert configs == [
        {"optimizer": "adam", "normalize": True},
        {"optimizer": "adam", "normalize": False},
        {"optimizer": "sgd", "normalize": True},
        {"optimizer": "sgd", "normalize": False},
    ]
    assert len(runs) == 12
    assert [(index, p.seed) for index, p in runs[:4]] == [(0, 10), (0, 11), (0, 12), (1, 10)]
    assert runs[5][1].optimizer == "adam" and runs[5][1].normalize is False


def test_the_base_applies_to_every_run_and_integral_floats_are_integers() -> None:
    request = StudyRequest(
        params={"epochs": 2.0, "train_samples": 1000}, grid={"dropout": [0, 0.5]}
    )
    _, runs = expand(request, first_seed=1, max_runs=200)
    assert {(p.epochs, p.train_samples) for _, p in runs} == {(2, 1000)}


def test_a_sample_is_reproducible_within_its_ranges_and_log_uniform_for_the_rate() -> None:
    ranges = {
        "learning_rate": [1e-4, 1e-1],
        "hidden_units": [32, 256],
        "optimizer": ["adam", "sgd"],
    }

    def drawn(seed: int) -> list[dict[str, object]]:
        return StudyRequest(sample={"n": 100, "ranges": ranges, "seed": seed}).configurations()

    assert drawn(3) == drawn(3) and drawn(3) != drawn(4)
    configs = [config for seed in range(4) for config in drawn(seed)]
    rates = [c["learning_rate"] for c in configs]
    assert all(1e-4 * 0.99 <= r <= 1e-1 * 1.01 for r in rates)
    below = sum(r < 10**-2.5 for r in rates) / len(rates)  # half the decades lie below 10^-2.5
    assert 0.4 < below < 0.6
    assert all(
        isinstance(c["hidden_units"], int) and 32 <= c["hidden_units"] <= 256 for c in configs
    )
    assert {c["optimizer"] for c in configs} == {"adam", "sgd"}
    assert math.isclose(sum(c["optimizer"] == "adam" for c in configs) / 400, 0.5, abs_tol=0.1)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"grid": {"seed": [1, 2]}}, "not a hyperparameter a study can vary"),
        ({"grid": {"colour": ["red"]}}, "not a hyperparameter"),
        ({"grid": {"epochs": [1, 1]}}, "the values repeat"),
        ({"grid": {"epochs": []}}, "give 1 to 20 values"),
        ({"grid": {"epochs": [1]}, "sample": {"n": 2, "ranges": {"epochs": [1, 3]}}}, "not both"),
        ({"sample": {"n": 2, "ranges": {"learning_rate": [0, 1]}}}, "log-uniform"),
        ({"sample": {"n": 2, "ranges": {"epochs": [1, 500]}}}, "epochs: 500 Input should be less"),
        ({"sample": {"n": 2, "ranges": {"optimizer": ["sgd", "sgd"]}}}, "each once"),
        ({"seeds": 0}, "greater than or equal to 1"),
    ],
)
def test_bad_designs_are_refused_with_a_reason(body: dict[str, object], reason: str) -> None:
    with pytest.raises(ValidationError) as refused:
        StudyRequest.model_validate(body)
    assert reason in str(refused.value)


def test_an_invalid_combination_names_its_configuration_and_field() -> None:
    request = StudyRequest(grid={"learning_rate": [0.01, 3]}, seeds=2)
    with pytest.raises(InvalidParams) as refused:
        expand(request, first_seed=1, max_runs=200)
    assert "learning_rate=3" in refused.value.message
    assert "grid.learning_rate" in refused.value.fields


def test_a_range_may_come_high_first() -> None:
    request = StudyRequest(sample={"n": 5, "ranges": {"epochs": [5, 1]}, "seed": 1})
    assert all(1 <= config["epochs"] <= 5 for config in request.configurations())


def test_the_total_is_bounded() -> None:
    request = StudyRequest(grid={"epochs": list(range(1, 11)), "dropout": [0, 0.1, 0.2]}, seeds=10)
    with pytest.raises(InvalidParams) as refused:
        expand(request, first_seed=1, max_runs=200)
    assert "300 runs" in refused.value.message and "seeds" in refused.value.fields
