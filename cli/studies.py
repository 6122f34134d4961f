"""`trainyard study run/show/list/cancel/replicate`: studies over the HTTP API."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from cli.client import Client
from cli.console import api_call, client_options, make_client, parse_param, printable, table

ACTIVE = ("queued", "running")


def parse_axes(pairs: tuple[str, ...], option: str) -> dict[str, list[Any]]:
    """`--grid normalize=true,false` pairs into {"normalize": [True, False]}."""
    axes: dict[str, list[Any]] = {}
    for pair in pairs:
        key, sep, values = pair.partition("=")
        if not sep or not key.strip() or not values.strip():
            raise click.BadParameter(f"{pair!r} is not key=v1,v2", param_hint=option)
        axes[key.strip()] = [
            parse_param((f"v={value.strip()}",))["v"] for value in values.split(",")
        ]
    return axes


def summary_text(study: dict[str, Any]) -> str:
    """The configurations' figures as a table, then the verdicts."""
    rows = []
    for config in study["configurations"]:
        accuracy = config["test_accuracy"]
        mean = "-" if accuracy["mean"] is None else f"{accuracy['mean']:.4f}"
        if accuracy["std"] is not None:
            mean += f" ± {accuracy['std']:.4f}"
        interval = accuracy["ci95"]
        rows.append(
            [
                config["index"],
                config["label"] + (" (baseline)" if config["index"] == study["baseline"] else ""),
                f"{config['n']}/{config['runs']}",
                mean,
                "-" if interval is None else f"[{interval[0]:.4f}, {interval[1]:.4f}]",
            ]
        )
    lines = [
        f"study {study['id']} ({printable(study['name'])}): {study['status']}, "
        f"{sum(study['counts'][s] for s in ('succeeded', 'failed', 'cancelled', 'pruned'))} of "
        f"{study['runs']} runs done",
        table(["#", "configuration", "n", "test accuracy", "95% interval"], rows),
        "",
    ]
    verdicts = [c["verdict"] for c in study["comparisons"] if c["metric"] == "test_accuracy"]
    lines += verdicts or ["one configuration: nothing to compare"]
    lines.append(f"({study['test']})")
    return "\n".join(lines)


def follow(client: Client, study_id: int, interval: float = 2.0) -> dict[str, Any]:
    """Wait for the study to finish, printing a line whenever another run finishes."""
    seen = -1
    while True:
        study = client.study(study_id)
        done = sum(study["counts"][s] for s in ("succeeded", "failed", "cancelled", "pruned"))
        if done != seen:
            click.echo(f"study {study_id}: {done} of {study['runs']} runs done", err=True)
            seen = done
        if study["status"] not in ACTIVE:
            return study
        time.sleep(interval)


@click.group("study")
def study() -> None:
    """Studies: a grid (or random sample) of settings x seed replicates, and honest verdicts."""


@study.command("run")
@click.option("--name", default=None)
@click.option("--param", "-p", "params", multiple=True, metavar="KEY=VALUE", help="A base value.")
@click.option("--grid", multiple=True, metavar="KEY=V1,V2", help="Values to vary; repeat.")
@click.option("--sample", "sample_n", type=int, default=None, help="Draw N configurations...")
@click.option("--range", "ranges", multiple=True, metavar="KEY=LOW,HIGH", help="...from these.")
@click.option("--sample-seed", type=int, default=None, help="Seed of the draws.")
@click.option("--seeds", type=int, default=3, show_default=True, help="Replicates each.")
@click.option("--wait", is_flag=True, help="Wait for it, print the summary and the verdicts.")
@click.option("--json", "as_json", is_flag=True, help="Print the study as JSON.")
@client_options
@api_call
def run_command(
    name: str | None,
    params: tuple[str, ...],
    grid: tuple[str, ...],
    sample_n: int | None,
    ranges: tuple[str, ...],
    sample_seed: int | None,
    seeds: int,
    wait: bool,
    as_json: bool,
    url: str | None,
    token: str | None,
) -> None:
    """Queue a study, as in: --grid normalize=true,false --seeds 4 --wait."""
    body: dict[str, Any] = {"name": name, "params": parse_param(params), "seeds": seeds}
    if sample_n is not None:
        body["sample"] = {
            "n": sample_n,
            "ranges": parse_axes(ranges, "--range"),
            "seed": sample_seed,
        }
    elif grid:
        body["grid"] = parse_axes(grid, "--grid")
    client = make_client(url, token)
    study = client.submit_study(body)
    click.echo(
        f"study {study['id']} queued: {study['configs']} configuration(s) x {seeds} seed(s)",
        err=True,
    )
    if wait:
        study = follow(client, study["id"])
    click.echo(json.dumps(study, indent=2) if as_json else summary_text(study))
    if wait and study["counts"]["succeeded"] != study["runs"]:
        sys.exit(1)


@study.command("show")
@click.argument("study_id", type=int)
@click.option("--baseline", type=int, default=None, help="Compare with this configuration.")
@click.option("--json", "as_json", is_flag=True)
@client_options
@api_call
def show_command(
    study_id: int, baseline: int | None, as_json: bool, url: str | None, token: str | None
) -> None:
    """Show a study's summary and verdicts."""
    study = make_client(url, token).study(study_id, baseline)
    click.echo(json.dumps(study, indent=2) if as_json else summary_text(study))


@study.command("list")
@client_options
@api_call
def list_command(url: str | None, token: str | None) -> None:
    """List the newest studies."""
    answer = make_client(url, token).studies()
    rows = [
        [
            s["id"],
            s["name"],
            s["status"],
            ", ".join(s["varied"]) or "-",
            f"{s['configs']}x{s['replicates']}",
        ]
        for s in answer["studies"]
    ]
    click.echo(table(["id", "name", "status", "varies", "configs x seeds"], rows))


@study.command("cancel")
@click.argument("study_id", type=int)
@client_options
@api_call
def cancel_command(study_id: int, url: str | None, token: str | None) -> None:
    """Cancel a study's unfinished runs."""
    study = make_client(url, token).cancel_study(study_id)
    click.echo(f"study {study_id}: {study['counts']['cancelled']} run(s) cancelled")


@study.command("replicate")
@click.argument("study_id", type=int)
@click.option("--seeds", type=int, default=2, show_default=True)
@client_options
@api_call
def replicate_command(study_id: int, seeds: int, url: str | None, token: str | None) -> None:
    """Add seeds to every configuration of a study, to narrow its intervals."""
    study = make_client(url, token).add_replicates(study_id, seeds)
    click.echo(f"study {study_id}: now {study['replicates']} seed(s) a configuration")
