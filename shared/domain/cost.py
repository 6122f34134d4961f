"""What a job costs before it is queued: an estimate of its compute, checked against a limit.

One epoch costs 6 P N floating-point operations for N images through a model of P parameters
(forward and backward), plus, for each of its steps, a pass over every parameter and its optimizer
slots and a fixed overhead: a batch of one image costs far more than 1/32 of a batch of 32. Both
are counted in FLOP-equivalents, the work the CPU could have done at `REFERENCE_FLOPS` in the same
time; `python -m bench.cost` measures the constants on a machine.
"""

from __future__ import annotations

from shared.domain.errors import InvalidParams
from shared.domain.params import Hyperparams

# What one core of the reference machine (2 cores, no GPU) sustains on the graph training path.
REFERENCE_FLOPS = 60e9
# Each step reads and writes every parameter and its optimizer slots: memory, not arithmetic.
PARAM_STEP_FLOP = 80.0
# The fixed cost of a step: gathering the batch, drawing the dropout mask, the loop itself.
STEP_FLOP = 4.2e6


def parameters(hidden_units: int) -> int:
    """Weights and biases of Flatten(784) -> Dense(hidden) -> Dense(10)."""
    return 784 * hidden_units + hidden_units + hidden_units * 10 + 10


def estimate_tflop(params: Hyperparams) -> float:
    """The estimated compute of training `params`, in TFLOP-equivalents."""
    size = parameters(params.hidden_units)
    validation = int(params.train_samples * params.validation_split)
    train = params.train_samples - validation
    steps = -(-train // params.batch_size)
    epoch = 6 * size * train + steps * (PARAM_STEP_FLOP * size + STEP_FLOP) + 2 * size * validation
    return params.epochs * epoch / 1e12


def check_cost(params: Hyperparams, limit_tflop: float) -> float:
    """Return the estimate, or raise 422 naming it and the limit when it is over."""
    estimate = estimate_tflop(params)
    if estimate > limit_tflop:
        hours = estimate * 1e12 / REFERENCE_FLOPS / 3600
        raise InvalidParams(
            f"this job's estimated compute is {estimate:,.0f} TFLOP (about {hours:.1f} h on one "
            f"core), over the limit of {limit_tflop:,.0f} TFLOP (TRAINYARD_MAX_JOB_TFLOP); fewer "
            "epochs, a larger batch_size or fewer hidden_units bring it down",
            {"params": f"estimated {estimate:,.1f} TFLOP, limit {limit_tflop:,.0f} TFLOP"},
        )
    return estimate
