"""`trainyard up` on the embedded defaults: SQLite store, SQLite broker, the web app and a
single-job worker per CPU."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from shared.cpus import available_cpus
from tests.support.machine import ROOT, mnist_dir
from tests.support.processes import bare_env, free_port, http_status
from tests.support.waiting import wait_for


def test_up_runs_a_job_on_nothing_but_python_and_one_ctrl_c_stops_it(tmp_path: Path) -> None:
    port = free_port()
    env = bare_env(
        TRAINYARD_HOME=str(tmp_path / "var"),
        TRAINYARD_DATA_DIR=str(mnist_dir()),
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    log = (tmp_path / "up.log").open("wb")
    up = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "up", "--port", str(port)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:

        def answering() -> bool:
            assert up.poll() is None, (tmp_path / "up.log").read_text()
            return http_status(f"{url}/runs") == 200

        wait_for(answering, 90, what="trainyard up to serve the dashboard")

        def workers() -> list[dict[str, object]]:
            with urllib.request.urlopen(f"{url}/api/workers", timeout=5) as response:
                return json.load(response)["workers"]

        # The layout bench.throughput measures fastest: a single-job worker per CPU.
        wait_for(
            lambda: len(workers()) == available_cpus(), 90, what="a worker per CPU to register"
        )
        assert sorted((w["name"].split("@")[0], w["concurrency"]) for w in workers()) == [
            (f"worker{n}", 1) for n in range(1, available_cpus() + 1)
        ]
        submit = subprocess.run(
            [sys.executable, "-m", "cli.main", "submit", "--url", url, "--wait",
             "-p", "train_samples=1000", "-p", "epochs=2", "--name", "embedded"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        assert submit.returncode == 0, submit.stderr + (tmp_path / "up.log").read_text()[-3000:]
        assert "succeeded: test accuracy" in submit.stdout
        assert (tmp_path / "var" / "trainyard.db").exists() and (
            tmp_path / "var" / "broker.db"
        ).exists()
    finally:
        up.send_signal(signal.SIGINT)
        code = up.wait(timeout=60)
        log.close()
    assert code == 0, (tmp_path / "up.log").read_text()[-3000:]
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0, "the web server stopped with trainyard up"
    # The workers are gone too: no process still runs from this test's home folder.
    leftover = subprocess.run(
        ["pgrep", "-f", "worker[0-9]+@"], capture_output=True, text=True
    ).stdout.split()
    owners = [
        pid
        for pid in leftover
        if str(tmp_path) in Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    ]
    assert owners == []
