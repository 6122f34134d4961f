"""`trainyard study search`: an adaptive search over the HTTP API."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from cli.client import Client
from cli.console import api_call, client_options, make_client, parse_param, printable, table
from cli.studies import study


def parse_range(pairs: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """`--range learning_rate=0.0001,0.1,log` into {"learning_rate": {"low", "high", "log"}}."""
    space: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        key, sep, rest = pair.partition("=")
        parts = [part.strip() for part in rest.split(",")]
        log = parts[-1:] == ["log"]
        bounds = parts[:-1] if log else parts
        try:
            low, high = (float(bound) for bound in bounds)
        except ValueError:
            raise click.BadParameter(
                f"{pair!r} is not key=low,high[,log]", param_hint="--range"
            ) from None
        if not sep or not key.strip():
            raise click.BadParameter(f"{pair!r} is not key=low,high[,log]", param_hint="--range")
        space[key.strip()] = {"low": low, "high": high, "log": log}
    return space


def parse_choices(pairs: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """`--choice optimizer=adam,sgd` into {"optimizer": {"choices": ["adam", "sgd"]}}."""
    space: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        key, sep, values = pair.partition("=")
        if not sep or not key.strip() or not values.strip():
            raise click.BadParameter(f"{pair!r} is not key=v1,v2", param_hint="--choice")
        choices = [parse_param((f"v={value.strip()}",))["v"] for value in values.split(",")]
        space[key.strip()] = {"choices": choices}
    return space


def search_text(detail: dict[str, Any]) -> str:
    """The trials as a table, then the chosen best."""
    search = detail["search"]
    names = list(search["spec"]["space"])
    rows = [
        [
            t["trial"],
            t["run_id"],
            t["status"],
            t["epochs_done"],
            "-" if t["value"] is None else f"{t['value']:.4f}",
            *(_value(t["params"].get(name)) for name in names),
        ]
        for t in search["trial_list"]
    ]
    metric = search["spec"]["metric"]
    lines = [
        f"search {detail['id']} ({printable(detail['name'])}): {search['state']}, "
        f"{len(rows)} of {search['spec']['trials']} trials, {search['epochs_trained']} epochs",
        table(["#", "run", "status", "epochs", metric, *names], rows),
    ]
    best = search["best"]
    if best is not None:
        test = "not read yet" if best["test_accuracy"] is None else f"{best['test_accuracy']:.4f}"
        lines.append(
            f"best: trial {best['trial']} (run {best['run_id']}), {metric} {best['value']:.4f}, "
            f"test accuracy {test}"
        )
    return "\n".join(lines)


def _value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def follow_search(client: Client, study_id: int, interval: float = 2.0) -> dict[str, Any]:
    """Wait for the search to end, printing a line whenever a trial ends."""
    seen = None
    while True:
        detail = client.study(study_id)
        search = detail["search"]
        counts = ", ".join(f"{n} {s}" for s, n in sorted(search["trials"].items()))
        if counts != seen:
            click.echo(f"search {study_id}: {counts}", err=True)
            seen = counts
        if search["state"] in ("done", "cancelled"):
            return detail
        time.sleep(interval)


@study.command("search")
@click.option("--name", default=None)
@click.option("--param", "-p", "params", multiple=True, metavar="KEY=VALUE", help="A base value.")
@click.option("--range", "ranges", multiple=True, metavar="KEY=LOW,HIGH[,log]", help="Repeat.")
@click.option("--choice", "choices", multiple=True, metavar="KEY=V1,V2", help="Repeat.")
@click.option("--trials", type=int, default=24, show_default=True)
@click.option("--sampler", type=click.Choice(["tpe", "random"]), default="tpe", show_default=True)
@click.option(
    "--pruner", type=click.Choice(["asha", "median", "none"]), default="asha", show_default=True
)
@click.option("--seed", type=int, default=1, show_default=True, help="The sampler's seed.")
@click.option("--parallel", type=int, default=None, help="Trials at once (default: workers).")
@click.option("--confirm-seeds", type=int, default=0, help="Retrain the best with N new seeds.")
@click.option("--wait", is_flag=True, help="Wait for it and print the trials and the best.")
@click.option("--json", "as_json", is_flag=True, help="Print the study as JSON.")
@client_options
@api_call
def search_command(
    name: str | None,
    params: tuple[str, ...],
    ranges: tuple[str, ...],
    choices: tuple[str, ...],
    trials: int,
    sampler: str,
    pruner: str,
    seed: int,
    parallel: int | None,
    confirm_seeds: int,
    wait: bool,
    as_json: bool,
    url: str | None,
    token: str | None,
) -> None:
    """Search adaptively, as in: --range learning_rate=0.0001,0.1,log --choice optimizer=adam,sgd
    --trials 24 --wait. Base values default to -p validation_split=0.1 and -p epochs=9."""
    base = {"validation_split": 0.1, "epochs": 9, **parse_param(params)}
    spec: dict[str, Any] = {
        "space": {**parse_range(ranges), **parse_choices(choices)},
        "trials": trials,
        "sampler": sampler,
        "pruner": pruner,
        "seed": seed,
    }
    if parallel is not None:
        spec["parallel"] = parallel
    if confirm_seeds:
        spec["confirm_seeds"] = confirm_seeds
    client = make_client(url, token)
    detail = client.submit_study({"name": name, "params": base, "search": spec})
    click.echo(f"search {detail['id']} queued: {trials} trial(s), {sampler} + {pruner}", err=True)
    if wait:
        detail = follow_search(client, detail["id"])
    click.echo(json.dumps(detail, indent=2) if as_json else search_text(detail))
    if wait and detail["search"]["state"] != "done":
        sys.exit(1)
