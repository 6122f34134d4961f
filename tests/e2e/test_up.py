"""`trainyard up` on the embedded defaults: SQLite store, SQLite broker, one web and one worker."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.support import ROOT, free_port, mnist_dir, wait_for


def test_up_runs_a_job_on_nothing_but_python_and_one_ctrl_c_stops_it(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINYARD_")}
    env.update(
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
            try:
                with urllib.request.urlopen(f"{url}/runs", timeout=2) as response:
                    return response.status == 200
            except OSError:
                return False

        wait_for(answering, 90, what="trainyard up to serve the dashboard")
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
    # The worker is gone too: no process still runs from this test's home folder.
    leftover = subprocess.run(
        ["pgrep", "-f", "worker1@"], capture_output=True, text=True
    ).stdout.split()
    owners = [
        pid
        for pid in leftover
        if str(tmp_path) in Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    ]
    assert owners == []
