"""The run commands, over a trainyard server's HTTP API: submit (and follow), runs, cancel."""

from __future__ import annotations

import csv
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from cli.client import Client
from cli.console import (
    api_call,
    client_options,
    make_client,
    parse_param,
    printable,
    table,
)
from shared.domain.filters import RunQuery
from shared.domain.params import PARAM_NAMES
from shared.domain.status import FINISHED_STATUSES
from shared.domain.text import spreadsheet_safe

# Options made from the API's own query model, so the CLI filters exactly as the API does.
FILTERS = tuple(
    name for name in RunQuery.model_fields if name not in ("sort", "page", "limit", "format")
)
EXPORT_COLUMNS = (
    "id", "name", "status", "created_at", "started_at", "finished_at", "duration_seconds",
    "epochs_done", "epochs_total", *PARAM_NAMES, "test_loss", "test_accuracy", "worker",
    "attempt", "error",
)  # fmt: skip
LIST_COLUMNS = (
    ("id", "id"), ("name", "name"), ("status", "status"), ("epochs", "epochs"),
    ("optimizer", "optimizer"), ("lr", "learning_rate"), ("hidden", "hidden_units"),
    ("norm", "normalize"), ("test acc", "test_accuracy"), ("created", "created_at"),
)  # fmt: skip


def filter_options(function: Any) -> Any:
    """Add one option per filter of GET /api/runs, plus --filter KEY=VALUE and --sort."""
    for name in reversed(FILTERS):
        help_text = RunQuery.model_fields[name].description
        function = click.option(f"--{name.replace('_', '-')}", name, default=None, help=help_text)(
            function
        )
    function = click.option(
        "--filter", "extra", multiple=True, metavar="KEY=VALUE", help="Any API filter; repeat."
    )(function)
    return click.option("--sort", default=None, help="Field to sort on; '-field' descends.")(
        function
    )


def collect_filters(options: dict[str, Any]) -> dict[str, str]:
    """Gather the filter options that were given into API query keys."""
    filters = {name: options[name] for name in FILTERS if options.get(name) is not None}
    for pair in options.get("extra") or ():
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{pair!r} is not key=value", param_hint="--filter")
        filters[key.strip()] = value
    if options.get("sort"):
        filters["sort"] = options["sort"]
    return filters


def _value(run: dict[str, Any], key: str) -> Any:
    if key == "epochs":
        return f"{run['epochs_done']}/{run['epochs_total']}"
    if key == "created_at":
        return (run["created_at"] or "")[:19].replace("T", " ")
    return run["params"][key] if key in run["params"] else run.get(key)


@click.group("runs")
def runs() -> None:
    """Query run history: list, show, compare, export."""


@runs.command("list")
@filter_options
@click.option("--page", default=None, type=int, help="Page number, from 1.")
@click.option("--limit", default=None, type=int, help="Runs per page (at most 200).")
@click.option("--json", "as_json", is_flag=True, help="Print the API's answer as JSON.")
@client_options
@api_call
def list_command(
    page: int | None,
    limit: int | None,
    as_json: bool,
    url: str | None,
    token: str | None,
    **options: Any,
) -> None:
    """List runs, e.g. --normalize false --test-accuracy-min 0.95 --sort=-test_accuracy."""
    filters = collect_filters(options)
    filters.update({k: v for k, v in (("page", page), ("limit", limit)) if v is not None})
    answer = make_client(url, token).list_runs(filters)
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return
    headers = [header for header, _ in LIST_COLUMNS]
    click.echo(
        table(headers, ([_value(r, key) for _, key in LIST_COLUMNS] for r in answer["runs"]))
    )
    click.echo(f"{answer['total']} runs; page {answer['page']} of {answer['pages']}", err=True)


@runs.command("show")
@click.argument("run_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the run as JSON.")
@client_options
@api_call
def show_command(run_id: int, as_json: bool, url: str | None, token: str | None) -> None:
    """Show everything known about a run."""
    run = make_client(url, token).run(run_id)
    if as_json:
        click.echo(json.dumps(run, indent=2))
        return
    fields = (
        "id", "name", "status", "created_at", "started_at", "finished_at", "duration_seconds",
        "worker", "attempt", "epochs_done", "epochs_total", "test_accuracy", "test_loss", "error",
    )  # fmt: skip
    rows = [[key, run[key]] for key in fields]
    rows += [[f"params.{key}", value] for key, value in run["params"].items()]
    rows += [[f"reproducibility.{k}", v] for k, v in run["reproducibility"].items()]
    click.echo(table(["field", "value"], rows))
    evaluation = run.get("evaluation")
    if evaluation:
        click.echo("\nper-class test accuracy")
        click.echo(table([str(d) for d in range(10)], [evaluation["per_class_accuracy"]]))
        click.echo("\nconfusion matrix (rows: true digit, columns: predicted)")
        matrix = evaluation["confusion_matrix"]
        click.echo(table(["", *map(str, range(10))], ([d, *row] for d, row in enumerate(matrix))))


@runs.command("compare")
@click.argument("run_ids", nargs=-1, required=True, type=int)
@click.option("--baseline", default=None, type=int, help="Run the deltas are measured against.")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@client_options
@api_call
def compare_command(
    run_ids: tuple[int, ...],
    baseline: int | None,
    as_json: bool,
    url: str | None,
    token: str | None,
) -> None:
    """Compare runs side by side; differing hyperparameters are marked with '*'."""
    answer = make_client(url, token).compare(list(run_ids), baseline)
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return
    compared = answer["runs"]
    differing = set(answer["differing_params"])
    headers = [
        "",
        *(
            f"run {r['id']}" + (" (base)" if r["id"] == answer["baseline"] else "")
            for r in compared
        ),
    ]
    rows: list[list[Any]] = [["  name", *(r["name"] for r in compared)]]
    rows += [
        [("* " if key in differing else "  ") + key, *(r["params"][key] for r in compared)]
        for key in PARAM_NAMES
    ]
    for key in (
        "status",
        "epochs_done",
        "best_epoch",
        "training_seconds",
        "test_accuracy",
        "test_loss",
    ):
        rows.append([f"  {key}", *(r[key] for r in compared)])
    rows.append(["  Δ test_accuracy", *(r["delta"]["test_accuracy"] for r in compared)])
    rows.append(["  Δ test_loss", *(r["delta"]["test_loss"] for r in compared)])
    click.echo(table(headers, rows))
    click.echo("* differs between the runs", err=True)


@runs.command("export")
@filter_options
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True
)
@click.option("--output", "-o", type=click.File("w"), default="-", help="File (default: stdout).")
@client_options
@api_call
def export_command(
    fmt: str, output: Any, url: str | None, token: str | None, **options: Any
) -> None:
    """Export every run matching the filters (all pages) as CSV or JSON."""
    rows = make_client(url, token).iter_runs(collect_filters(options))
    if fmt == "json":
        json.dump(list(rows), output, indent=2)
        output.write("\n")
        return
    writer = csv.writer(output, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    count = 0
    for run in rows:
        row = [run["params"].get(key, run.get(key)) for key in EXPORT_COLUMNS]
        writer.writerow([spreadsheet_safe(value) for value in row])
        count += 1
    click.echo(f"{count} runs exported", err=True)


@click.command("cancel")
@click.argument("run_id", type=int)
@client_options
@api_call
def cancel_command(run_id: int, url: str | None, token: str | None) -> None:
    """Cancel a queued run, or ask a running one to stop."""
    run = make_client(url, token).cancel(run_id)
    state = "cancelled" if run["status"] == "cancelled" else "asked to stop"
    click.echo(f"run {run_id} {state}")


def _epoch_text(run: dict[str, Any]) -> str:
    if run["latest_loss"] is None:
        return run["status"]
    return f"loss {run['latest_loss']:.4f} acc {run['latest_accuracy']:.4f}"


@contextmanager
def epoch_display(run: dict[str, Any]) -> Iterator[Callable[[dict[str, Any]], None]]:
    """A function that shows each new reading of `run`: a progress bar on a terminal, else (a
    log, a pipe) one line per finished epoch."""
    shown = 0
    if not sys.stderr.isatty():

        def line(run: dict[str, Any]) -> None:
            nonlocal shown
            if run["epochs_done"] > shown:
                shown = run["epochs_done"]
                text = f"epoch {shown}/{run['epochs_total']} {_epoch_text(run)}"
                click.echo(f"run {run['id']}: {text}", err=True)

        yield line
        return
    latest = run
    with click.progressbar(
        length=run["epochs_total"],
        label=f"run {run['id']}",
        file=sys.stderr,
        show_pos=True,
        show_eta=True,
        item_show_func=lambda _: _epoch_text(latest),
    ) as bar:

        def advance(run: dict[str, Any]) -> None:
            nonlocal shown, latest
            latest = run
            if run["epochs_done"] > shown:
                bar.update(run["epochs_done"] - shown)
                shown = run["epochs_done"]
            else:
                bar.render_progress()

        yield advance


def follow(client: Client, run_id: int, interval: float = 1.0) -> dict[str, Any]:
    """Follow the run's epochs until it finishes (see `epoch_display`); return the run."""
    run = client.run(run_id)
    with epoch_display(run) as show:
        while True:
            show(run)
            if run["status"] in FINISHED_STATUSES:
                return run
            time.sleep(interval)
            run = client.run(run_id)


@click.command()
@click.option(
    "--param", "-p", "params", multiple=True, metavar="KEY=VALUE", help="A hyperparameter; repeat."
)
@click.option("--name", default=None)
@click.option(
    "--idempotency-key", default=None, help="Retrying with the same key queues nothing new."
)
@click.option("--wait", is_flag=True, help="Follow the run and exit non-zero unless it succeeds.")
@click.option("--json", "as_json", is_flag=True, help="Print the run as JSON.")
@client_options
@api_call
def submit(
    params: tuple[str, ...],
    name: str | None,
    idempotency_key: str | None,
    wait: bool,
    as_json: bool,
    url: str | None,
    token: str | None,
) -> None:
    """Queue a training run; set hyperparameters with -p, as in -p epochs=3 -p normalize=false."""
    client = make_client(url, token)
    run = client.submit(parse_param(params), name, idempotency_key)
    click.echo(f"run {run['id']} queued: {printable(run['name'])}", err=True)
    if wait:
        run = follow(client, run["id"])
    if as_json:
        click.echo(json.dumps(run, indent=2))
    if wait:
        summary = f"run {run['id']} {run['status']}"
        if run["test_accuracy"] is not None:
            summary += f": test accuracy {run['test_accuracy']:.4f}, loss {run['test_loss']:.4f}"
        if run["error"]:
            summary += f": {printable(run['error'])}"
        click.echo(summary)
        if run["status"] != "succeeded":
            sys.exit(1)
    elif not as_json:
        click.echo(run["id"])


def register(group: click.Group) -> None:
    """Add these commands to the `trainyard` group."""
    group.add_command(submit)
    group.add_command(runs)
    group.add_command(cancel_command)
