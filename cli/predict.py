"""`trainyard predict RUN_ID digit.png [...]`: what a run's model makes of drawings, over the API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from cli.client import ApiError
from cli.console import api_call, client_options, make_client, printable

# Answers about the run or the server, which every other file would get too.
FOR_EVERY_FILE = (0, 401, 403, 404, 409, 503)


def top(probabilities: list[float], count: int) -> str:
    """The `count` most probable digits, most probable first: `7 98.1%, 1 1.2%`."""
    order = sorted(range(len(probabilities)), key=lambda digit: -probabilities[digit])
    return ", ".join(f"{digit} {100 * probabilities[digit]:.1f}%" for digit in order[:count])


def line(name: str, answer: dict[str, Any], count: int) -> str:
    prediction = answer["predictions"][0]
    return f"{printable(name)}: {prediction['label']}  ({top(prediction['probabilities'], count)})"


@click.command()
@click.argument("run_id", type=click.IntRange(min=1))
@click.argument(
    "images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--top", "count", default=3, show_default=True, type=click.IntRange(1, 10),
              help="How many of the most probable digits to show.")  # fmt: skip
@client_options
@api_call
def predict(
    run_id: int, images: tuple[Path, ...], count: int, url: str | None, token: str | None
) -> None:
    """Classify PNG drawings of digits with run RUN_ID's model: each file's label and its most
    probable digits. Any size: the server crops, scales and centres them as MNIST's digits."""
    client = make_client(url, token)
    refused = 0
    for path in images:
        try:
            click.echo(line(str(path), client.predict_png(run_id, path.read_bytes()), count))
        except ApiError as exc:
            if exc.status in FOR_EVERY_FILE:
                raise
            # One bad file (not a PNG, nothing drawn) does not stop the others.
            click.echo(f"{printable(str(path))}: {exc}", err=True)
            refused += 1
    if refused:
        raise SystemExit(1)
