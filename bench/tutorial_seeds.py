"""The quickstart's seed-to-seed spread: train the full recipe over several seeds, both pixel scales.

    python -m bench.tutorial_seeds [--seeds 8]

Trains in this process (about 25 s a job on 2 cores) and prints each seed's test accuracy and loss,
then min, mean and max per scale, beside the tutorial's published figures.
"""

from __future__ import annotations

import argparse
import statistics

from shared.domain.params import Hyperparams
from tests.support.machine import mnist_dir

TUTORIAL = {True: (0.9777, 0.0744), False: (0.9285, 0.2898)}


def main() -> None:
    """Train the quickstart recipe per seed and scale; print the spread."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8)
    args = parser.parse_args()

    from worker.training.data import load_mnist
    from worker.training.model import Job
    from worker.training.runtime import init_tensorflow

    init_tensorflow(1)
    data = load_mnist(mnist_dir())
    for normalize in (True, False):
        accuracies = []
        print(f"normalize={normalize}: seed, test accuracy, test loss")
        for seed in range(1, args.seeds + 1):
            job = Job(Hyperparams(normalize=normalize, seed=seed), data)
            job.train_epochs(lambda _: None)
            loss, accuracy, _ = job.evaluate()
            accuracies.append(accuracy)
            print(f"  {seed:>3}  {accuracy:.4f}  {loss:.4f}", flush=True)
        accuracy, loss = TUTORIAL[normalize]
        print(
            f"  min {min(accuracies):.4f}  mean {statistics.mean(accuracies):.4f}  "
            f"max {max(accuracies):.4f}   (tutorial: {accuracy} / loss {loss})"
        )


if __name__ == "__main__":
    main()
