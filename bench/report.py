"""`make bench`: run each benchmark, show its output as it runs, and write docs/benchmarks.md.

    python -m bench.report                      # every bench in BENCHES, one after another
    python -m bench.report --only faults        # one bench (repeat --only for more)
    python -m bench.report --list               # the names --only takes

Each bench runs as a subprocess of this interpreter. Its standard output is copied to the terminal
line by line and, verbatim, into its own section of docs/benchmarks.md, with the date (UTC), the
machine, the Python and TensorFlow versions and the git commit it ran on. The file is rewritten
after each bench, and only that bench's section changes: the other sections, and their dates,
stay as they were (sections of benches not in BENCHES too, such as figures recorded by hand).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import re
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from shared.cpus import available_cpus

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "docs" / "benchmarks.md"
# The PostgreSQL server the PostgreSQL variants make their throwaway databases on (bench/stack.py).
POSTGRES = os.environ.get(
    "TRAINYARD_BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
# Lines of a failed bench's standard error kept in its section.
STDERR_KEPT = 30
# A section, as `section` writes it: the markers let one be replaced and the rest kept verbatim.
SECTION = re.compile(r"<!-- bench:(?P<name>[\w.-]+) -->\n.*?<!-- /bench:(?P=name) -->\n", re.S)


@dataclass(frozen=True)
class Bench:
    """One benchmark: a module run with `python -m`, and its arguments."""

    name: str
    module: str
    args: tuple[str, ...] = ()

    def command(self) -> list[str]:
        """The command line that runs the bench with this interpreter."""
        return [sys.executable, "-m", self.module, *self.args]

    def shown(self) -> str:
        """The command as the section shows it: `python`, and no password."""
        return " ".join(["python", "-m", self.module, *(_hide_password(a) for a in self.args)])


# Every bench `make bench` runs, in this order; a new one goes here.
BENCHES: tuple[Bench, ...] = (
    Bench("speed", "bench.speed"),
    Bench("parity", "bench.parity"),
    Bench("search", "bench.search"),
    Bench("throughput", "bench.throughput"),
    Bench("throughput-embedded", "bench.throughput", ("--broker", "embedded")),
    Bench("faults", "bench.faults"),
    Bench("faults-rabbitmq", "bench.faults", ("--broker", "rabbitmq")),
    Bench("faults-embedded", "bench.faults", ("--broker", "embedded")),
    Bench("runs_pages", "bench.runs_pages"),
    Bench("runs_pages-postgres", "bench.runs_pages", ("--postgres", POSTGRES)),
    Bench("metrics_scrape", "bench.metrics_scrape"),
    Bench("metrics_scrape-postgres", "bench.metrics_scrape", ("--postgres", POSTGRES)),
    Bench("predict", "bench.predict"),
    Bench("runs_pages-million", "bench.runs_pages", ("--postgres", POSTGRES, "--runs", "1000000")),
    Bench(
        "control_plane",
        "bench.control_plane",
        ("--nodes", "200", "--seconds", "120", "--postgres", POSTGRES, "--pgbouncer", "start"),
    ),
    # Without a pooler every node and job is a server connection: 40 nodes stay under 100.
    Bench(
        "control_plane-direct",
        "bench.control_plane",
        ("--nodes", "40", "--seconds", "120", "--postgres", POSTGRES),
    ),
)


def _hide_password(text: str) -> str:
    return re.sub(r"(://[^:/@\s]+:)[^@/\s]+@", r"\1***@", text)


@dataclass(frozen=True)
class Environment:
    """Where and on what the benches ran."""

    machine: str
    versions: str
    commit: str

    @classmethod
    def here(cls) -> Environment:
        """This machine, its versions and the checkout's commit."""
        return cls(_machine(), _versions(), _commit())


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _machine() -> str:
    cpu = re.search(r"^model name\s*:\s*(.+)$", _read("/proc/cpuinfo"), re.M)
    memory = re.search(r"^MemTotal:\s*(\d+) kB", _read("/proc/meminfo"), re.M)
    system = re.search(r'^PRETTY_NAME="?([^"\n]+)"?', _read("/etc/os-release"), re.M)
    cores = os.cpu_count() or 0
    usable = available_cpus()
    parts = [
        cpu.group(1).strip() if cpu else platform.processor() or platform.machine(),
        f"{cores} cores" + (f" ({usable} usable)" if usable != cores else ""),
        f"{int(memory.group(1)) / 2**20:.1f} GiB memory" if memory else "memory unknown",
        f"{system.group(1) if system else platform.system()}, kernel {platform.release()}",
    ]
    return "; ".join(parts)


def _version(*distributions: str) -> str:
    for name in distributions:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "not installed"


def _versions() -> str:
    tensorflow = _version("tensorflow-cpu", "tensorflow")
    return f"Python {platform.python_version()}, TensorFlow {tensorflow}, Keras {_version('keras')}"


def _git(*args: str) -> str:
    try:
        result = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return result.stdout.strip() if result.returncode == 0 else ""


def _commit() -> str:
    commit = _git("rev-parse", "--short", "HEAD") or "unknown"
    # This file's own edits do not count as changes to what was measured.
    changed = _git(
        "status", "--porcelain", "--untracked-files=no", "--", ".", ":!docs/benchmarks.md"
    )
    return f"{commit} (with uncommitted changes)" if changed else commit


def now() -> str:
    """The time now, in UTC, to the minute."""
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


@dataclass(frozen=True)
class Result:
    """What one bench printed, and how it ended."""

    output: str
    returncode: int
    seconds: float
    stderr_tail: str


def run_bench(bench: Bench) -> Result:
    """Run the bench, echoing its output as it comes; keep its stdout and the end of its stderr."""
    began = time.monotonic()
    process = subprocess.Popen(
        bench.command(),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        bufsize=1,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None and process.stderr is not None
    tail: deque[str] = deque(maxlen=STDERR_KEPT)
    echo = threading.Thread(target=_relay, args=(process.stderr, sys.stderr, tail), daemon=True)
    echo.start()
    lines: list[str] = []
    try:
        _relay(process.stdout, sys.stdout, lines)
        process.wait()
    except KeyboardInterrupt:
        process.terminate()
        process.wait()
        raise
    echo.join()
    return Result("".join(lines), process.returncode, time.monotonic() - began, "".join(tail))


def _relay(source: IO[str], sink: IO[str], kept: list[str] | deque[str]) -> None:
    for line in source:
        sink.write(line)
        sink.flush()
        kept.append(line)


def _fence(text: str) -> str:
    """A code fence longer than any run of backticks in `text`."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def _block(text: str) -> str:
    fence = _fence(text)
    return f"{fence}\n{text.rstrip()}\n{fence}\n"


def section(bench: Bench, result: Result, environment: Environment, when: str) -> str:
    """The Markdown of one bench's section, between the markers that let it be replaced."""
    if result.returncode == 0:
        ended = f"It ran for {result.seconds:.0f} s."
    else:
        ended = f"It FAILED (exit {result.returncode}) after {result.seconds:.0f} s."
    parts = [
        f"## {bench.name}\n\n",
        f"Measured {when} on {environment.machine}; {environment.versions}; "
        f"commit {environment.commit}. {ended}\n\n",
        _block(f"$ {bench.shown()}\n{result.output}"),
    ]
    if result.returncode != 0 and result.stderr_tail:
        parts += ["\nThe end of its standard error:\n\n", _block(result.stderr_tail)]
    body = "".join(parts)
    return f"<!-- bench:{bench.name} -->\n{body}<!-- /bench:{bench.name} -->\n"


def sections_of(text: str) -> dict[str, str]:
    """The sections of an existing docs/benchmarks.md, by name, in their order."""
    return {match["name"]: match[0] for match in SECTION.finditer(text)}


def header(environment: Environment, when: str, command: str, names: list[str]) -> str:
    """The file's header: the last run's command and environment, and an index of the sections."""
    index = ", ".join(f"[{name}](#{name.lower()})" for name in names)
    return (
        "<!-- header -->\n"
        f"Last written {when} by `{command}`, on {environment.machine}; "
        f"{environment.versions}; commit {environment.commit}.\n\n"
        f"Sections: {index}.\n"
        "<!-- /header -->\n"
    )


INTRO = """# Benchmarks

Every figure trainyard has measured lives here, and only here: the README and the rest of docs/
carry none. `make bench` (`python -m bench.report`) runs each benchmark and writes its output
below, verbatim; `python -m bench.report --only NAME` runs one and replaces only its section.
Each section says when, on which machine and at which commit it was measured. Sections may come
from different days, machines or loads, so compare figures within a section: each bench measures
both sides of its comparisons in one run. Sections no bench writes were recorded by hand from what
a test printed, and say so. [development.md](development.md#benchmarks) says what each bench
measures.

"""


def order(sections: dict[str, str]) -> list[str]:
    """Section names: the benches in BENCHES order, then the others in the order the file had."""
    known = [bench.name for bench in BENCHES if bench.name in sections]
    return known + [name for name in sections if name not in known]


def render(sections: dict[str, str], top: str) -> str:
    """The whole file: the intro, the header, then every section."""
    return INTRO + top + "".join(f"\n{sections[name]}" for name in order(sections))


def write(path: Path, sections: dict[str, str], top: str) -> None:
    """Replace the file in one step, so a reader never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".md.tmp")
    temporary.write_text(render(sections, top))
    temporary.replace(path)


def choose(only: list[str] | None) -> list[Bench]:
    """The benches to run: all, or those named, in BENCHES order; an unknown name stops here."""
    if not only:
        return list(BENCHES)
    names = {bench.name for bench in BENCHES}
    unknown = [name for name in only if name not in names]
    if unknown:
        raise SystemExit(
            f"bench.report: no bench named {', '.join(unknown)}; "
            f"choose from {', '.join(sorted(names))}"
        )
    return [bench for bench in BENCHES if bench.name in only]


def report(benches: list[Bench], path: Path, command: str) -> int:
    """Run the benches one after another, writing the file after each; return the exit code."""
    environment = Environment.here()
    sections = sections_of(path.read_text()) if path.exists() else {}
    failed = []
    for number, bench in enumerate(benches, 1):
        print(f"\n=== bench {number}/{len(benches)}: {bench.shown()}", file=sys.stderr, flush=True)
        when = now()
        result = run_bench(bench)
        if result.returncode != 0:
            failed.append(bench.name)
        sections[bench.name] = section(bench, result, environment, when)
        write(path, sections, header(environment, now(), command, order(sections)))
        print(f"=== {bench.name}: written to {path}", file=sys.stderr, flush=True)
    if failed:
        print(f"bench.report: {', '.join(failed)} failed", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> None:
    """Run the chosen benches and write their sections."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", metavar="NAME", help="run this bench only")
    parser.add_argument("--list", action="store_true", help="print the benches' names and exit")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="default: docs/benchmarks.md")
    args = parser.parse_args(argv)
    if args.list:
        for bench in BENCHES:
            print(f"{bench.name:<22} {bench.shown()}")
        return
    command = "python -m bench.report" + "".join(f" --only {name}" for name in args.only or [])
    benches = choose(args.only)
    try:
        code = report(benches, args.output, command)
    except KeyboardInterrupt:
        print("bench.report: interrupted; the sections written so far are kept", file=sys.stderr)
        code = 130
    raise SystemExit(code)


if __name__ == "__main__":
    main()
