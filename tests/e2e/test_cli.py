"""The `trainyard` client as a subprocess against a live server and a real worker."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from shared.config import Settings
from shared.store.models import Run
from tests.builders import make_run
from tests.support.machine import ROOT
from tests.support.processes import cli_env, run_trainyard

TIMEOUT = 240


def trainyard(
    live_server: str, settings: Settings, *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run `trainyard ARGS` against the live server; return the finished process."""
    return run_trainyard(*args, env=cli_env(settings, live_server), timeout=timeout)


def rows(output: str) -> list[dict[str, Any]]:
    return json.loads(output)["runs"]


def run_id_in(pattern: str, text: str) -> int:
    """The run id the first match of `pattern` captures in `text`."""
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not in {text!r}"
    return int(match.group(1))


def test_cli_submits_follows_cancels_and_queries(
    settings: Settings, worker: Settings, live_server: str
) -> None:
    small = ("-p", "epochs=2", "-p", "train_samples=500", "-p", "batch_size=64")
    done = trainyard(
        live_server, settings, "submit", *small, "--name", "cli small", "--wait", timeout=TIMEOUT
    )
    assert done.returncode == 0, done.stderr
    assert re.search(r"run \d+ succeeded: test accuracy 0\.\d{4}", done.stdout), done.stdout
    assert "2/2" in done.stderr  # the progress bar reached the last epoch
    ok_id = run_id_in(r"run (\d+) succeeded", done.stdout)

    # A long run followed with --wait, cancelled from a second command: the first exits 1.
    follower = subprocess.Popen(
        [
            sys.executable, "-m", "cli.main", "submit", "-p", "epochs=40",
            "-p", "train_samples=3000", "-p", "normalize=false", "--name", "cli long", "--wait",
        ],
        cwd=ROOT,
        env=cli_env(settings, live_server),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert follower.stderr is not None
        first_line = follower.stderr.readline()
        long_id = run_id_in(r"run (\d+) queued", first_line)
        stopped = trainyard(live_server, settings, "cancel", str(long_id))
        assert stopped.returncode == 0, stopped.stderr
        assert f"run {long_id}" in stopped.stdout
        out, err = follower.communicate(timeout=TIMEOUT)
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    assert follower.returncode == 1, err
    assert f"run {long_id} cancelled" in out

    bad = trainyard(live_server, settings, "submit", "-p", "epochs=0")
    assert bad.returncode != 0 and "params.epochs" in bad.stderr

    # runs list: filters as options, --filter pairs and --sort, as a table and as JSON.
    listed = trainyard(live_server, settings, "runs", "list", "--status", "succeeded", "--json")
    assert [r["id"] for r in rows(listed.stdout)] == [ok_id]
    listed = trainyard(
        live_server, settings, "runs", "list", "--filter", "normalize=false", "--json"
    )
    assert [r["id"] for r in rows(listed.stdout)] == [long_id]
    listed = trainyard(live_server, settings, "runs", "list", "--epochs-max", "10", "--sort=id")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split()[:3] == ["id", "name", "status"]
    assert [line.split()[0] for line in lines[2:]] == [str(ok_id)]
    assert "cli small" in lines[2] and "succeeded" in lines[2]
    table = trainyard(live_server, settings, "runs", "list", "--sort=-id").stdout
    assert [line.split()[0] for line in table.splitlines()[2:]] == [str(long_id), str(ok_id)]
    unknown = trainyard(live_server, settings, "runs", "list", "--filter", "colour=red")
    assert unknown.returncode == 1 and "colour" in unknown.stderr

    shown = trainyard(live_server, settings, "runs", "show", str(ok_id))
    assert shown.returncode == 0 and "confusion matrix" in shown.stdout
    assert re.search(r"params\.train_samples\s+500", shown.stdout)

    compared = trainyard(live_server, settings, "runs", "compare", str(ok_id), str(long_id))
    assert compared.returncode == 0, compared.stderr
    marked = {line.split()[1] for line in compared.stdout.splitlines() if line.startswith("* ")}
    assert marked == {"epochs", "batch_size", "normalize", "train_samples", "seed"}

    exported = trainyard(live_server, settings, "runs", "export", "--format", "csv")
    table_rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert sorted(int(r["id"]) for r in table_rows) == [ok_id, long_id]
    assert {r["status"] for r in table_rows} == {"succeeded", "cancelled"}
    as_json = trainyard(
        live_server, settings, "runs", "export", "--format", "json", "--status", "cancelled"
    )
    assert [r["id"] for r in json.loads(as_json.stdout)] == [long_id]


def test_names_reach_the_terminal_and_spreadsheets_harmless(
    settings: Settings, live_server: str, session: Session
) -> None:
    """A formula-like name is quoted in CSV; a name stored before control characters were refused
    (written straight to the store here) is shown escaped, never sent to the terminal raw."""
    formula = make_run(session, name='=HYPERLINK("http://evil")')
    legacy = make_run(session, name="plain")
    session.execute(update(Run).where(Run.id == legacy.id).values(name="clear\x1b[2Jscreen"))
    session.commit()
    exported = trainyard(live_server, settings, "runs", "export", "--format", "csv")
    names = {int(r["id"]): r["name"] for r in csv.DictReader(io.StringIO(exported.stdout))}
    assert names[formula.id] == '\'=HYPERLINK("http://evil")'
    listed = trainyard(live_server, settings, "runs", "list")
    shown = trainyard(live_server, settings, "runs", "show", str(legacy.id))
    for output in (listed.stdout, shown.stdout):
        assert "\x1b" not in output and "clear\\x1b[2Jscreen" in output
