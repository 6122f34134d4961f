"""The layers, read from the imports of every module of shared/, web/, worker/ and cli/.

Arrows point one way: domain <- store <- read <- web, worker, cli; ops may use domain, store and
the settings; shared/config.py and shared/cpus.py are the base every layer may import. Frameworks
stay where they belong: the domain is pure (no SQLAlchemy, no framework, no I/O), shared/ imports
no Flask, Celery or TensorFlow, SQL is built only in the store, TensorFlow only in worker/training,
and the CLI loads neither Flask, Celery nor TensorFlow until a command needs them. Between the
tests and the benches too, one direction: bench/ may use the harness in tests/support/, nothing
under tests/ imports bench/.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.machine import ROOT

PACKAGES = ("shared", "web", "worker", "cli")
BASE = {"shared", "shared.config", "shared.cpus"}
# What each layer may import of the project: itself and the layers below it.
MAY_USE = {
    "base": {"base"},
    "domain": {"base", "domain"},
    "store": {"base", "domain", "store"},
    "read": {"base", "domain", "store", "read"},
    "ops": {"base", "domain", "store", "ops"},
    "web": {"base", "domain", "store", "read", "ops", "web"},
    "worker": {"base", "domain", "store", "read", "ops", "worker"},
    "cli": {"base", "domain", "store", "read", "ops", "cli"},
}
SHARED_LAYERS = {"base", "domain", "store", "read", "ops"}
FRAMEWORKS = {"flask", "werkzeug", "flask_wtf", "wtforms", "celery", "tensorflow", "keras"}
# Libraries each layer must not import, at any depth (a function-level import counts too).
MUST_NOT_USE = {
    "domain": FRAMEWORKS | {"sqlalchemy", "alembic", "psycopg", "kombu", "redis"},
    **dict.fromkeys(SHARED_LAYERS - {"domain"}, FRAMEWORKS),
    "web": {"tensorflow", "keras"},
    "worker": {"flask", "werkzeug", "flask_wtf", "wtforms"},
}
# What the CLI may import only inside the command that needs it.
CLI_LATER = {"flask", "werkzeug", "celery", "tensorflow", "keras"}
# The domain reads and writes nothing: no file, process, network or database modules...
IO_MODULES = {
    "os", "io", "pathlib", "shutil", "tempfile", "socket", "subprocess", "urllib", "http",
    "sqlite3", "requests", "redis", "kombu",
}  # fmt: skip
IO_BUILTINS = {"open", "print", "input"}  # ...and calls none of these
# Outside the store (and ops, which administers databases) SQLAlchemy is a type or an error.
SQLALCHEMY_OUTSIDE_STORE = {
    "sqlalchemy": {"Engine"},
    "sqlalchemy.orm": {"Session"},
    "sqlalchemy.exc": None,  # any exception
}


@dataclass(frozen=True)
class Import:
    """One module (or names of it) that a module imports, and where."""

    module: str
    names: tuple[str, ...]  # empty for `import module`
    top_level: bool  # False inside a function: loaded only when it runs
    line: int

    @property
    def root(self) -> str:
        return self.module.split(".")[0]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    """Whether a dotted name is one of the project's modules or packages."""
    path = ROOT / name.replace(".", "/")
    return path.is_dir() or path.with_suffix(".py").is_file()


def layer_of(module: str) -> str | None:
    """The layer a project module belongs to, or None for a library."""
    if module in BASE:
        return "base"
    parts = module.split(".")
    if parts[0] == "shared":
        return parts[1] if parts[1] in SHARED_LAYERS else None
    return parts[0] if parts[0] in PACKAGES else None


def imports_of(module: str, source: str) -> Iterator[Import]:
    """Every import statement of a module, relative ones made absolute."""

    def walk(node: ast.AST, top_level: bool) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield Import(alias.name, (), top_level, child.lineno)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    package = module.split(".")[: -child.level]
                    base = ".".join([*package, base] if base else package)
                names = tuple(alias.name for alias in child.names)
                yield Import(base, names, top_level, child.lineno)
                # `from shared.read import runs` imports the module shared.read.runs.
                for name in names:
                    qualified = f"{base}.{name}" if base else name
                    if is_module(qualified):
                        yield Import(qualified, (), top_level, child.lineno)
            inner = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            yield from walk(child, top_level and not inner)

    yield from walk(ast.parse(source), True)


def io_calls(source: str) -> Iterator[tuple[str, int]]:
    for node in ast.walk(ast.parse(source)):
        called = node.func if isinstance(node, ast.Call) else None
        if isinstance(called, ast.Name) and called.id in IO_BUILTINS:
            yield called.id, node.lineno


def violations(module: str, source: str) -> list[str]:
    """What a module imports (or does) against the layering, one line each."""
    layer = layer_of(module)
    assert layer is not None, module
    found = []
    for imported in imports_of(module, source):
        where = f"{module}:{imported.line} imports {imported.module}"
        target = layer_of(imported.module)
        if target is not None and target not in MAY_USE[layer]:
            found.append(f"{where}: {layer} must not depend on {target}")
        if imported.root in MUST_NOT_USE.get(layer, set()):
            found.append(f"{where}: {layer} must not use {imported.root}")
        if layer == "cli" and imported.top_level and imported.root in CLI_LATER:
            found.append(f"{where}: the CLI imports {imported.root} only in the command needing it")
        if layer == "domain" and imported.root in IO_MODULES:
            found.append(f"{where}: the domain does no I/O")
        if imported.root in ("tensorflow", "keras") and not module.startswith("worker.training"):
            found.append(f"{where}: TensorFlow is imported only under worker/training/")
        if imported.root == "sqlalchemy" and layer not in ("store", "ops"):
            allowed = SQLALCHEMY_OUTSIDE_STORE.get(imported.module, set())
            if allowed is not None and not (imported.names and set(imported.names) <= allowed):
                found.append(f"{where}: SQL is built only in shared/store/")
    if layer == "domain":
        found += [
            f"{module}:{line} calls {name}: the domain does no I/O"
            for name, line in io_calls(source)
        ]
    return found


def modules() -> list[tuple[str, Path]]:
    return sorted(
        (module_name(path), path) for package in PACKAGES for path in (ROOT / package).rglob("*.py")
    )


def test_every_layer_of_the_tree_is_known() -> None:
    names = [name for name, _ in modules()]
    assert len(names) > 60
    assert {layer_of(name) for name in names} == set(MAY_USE)


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_point_down_the_layers(package: str) -> None:
    found = [
        problem
        for name, path in modules()
        if name.split(".")[0] == package
        for problem in violations(name, path.read_text())
    ]
    assert not found, "\n".join(found)


# Each rule, broken once: the check above fails when someone adds an import like these.
WRONG = [
    (
        "shared.domain.params",
        "from shared.store.models import Run",
        "domain must not depend on store",
    ),
    ("shared.domain.stats", "import sqlalchemy", "domain must not use sqlalchemy"),
    ("shared.domain.cost", "from pathlib import Path", "the domain does no I/O"),
    ("shared.domain.cost", "def f():\n    print('x')", "calls print"),
    (
        "shared.store.queries",
        "from shared.read.models import RunOut",
        "store must not depend on read",
    ),
    ("shared.store.runs", "def f():\n    from flask import request", "store must not use flask"),
    ("shared.read.runs", "from web.schemas import SubmitRequest", "read must not depend on web"),
    ("shared.ops.pgadmin", "from shared.read import runs", "ops must not depend on read"),
    ("shared.config", "from shared.domain.params import Hyperparams", "base must not depend on"),
    ("web.api", "def f():\n    import tensorflow", "web must not use tensorflow"),
    ("web.pages", "from sqlalchemy import select", "SQL is built only in shared/store/"),
    ("worker.node", "from flask import Flask", "worker must not use flask"),
    ("worker.jobs", "from sqlalchemy import update", "SQL is built only in shared/store/"),
    ("worker.jobs", "from web.queue import Dispatcher", "worker must not depend on web"),
    ("worker.process", "import keras", "only under worker/training/"),
    ("cli.remote", "from celery import Celery", "only in the command needing it"),
    ("cli.main", "from worker import jobs", "cli must not depend on worker"),
    ("shared.read.compare", "from ... import web", "read must not depend on web"),
]


@pytest.mark.parametrize(("module", "source", "reason"), WRONG)
def test_a_wrong_way_import_is_caught(module: str, source: str, reason: str) -> None:
    found = violations(module, source)
    assert any(reason in problem for problem in found), found


def test_relative_imports_are_read_as_absolute_ones() -> None:
    assert not violations("shared.read.compare", "from .. import store\nfrom ..store import models")


def test_a_command_imports_frameworks_only_when_it_runs() -> None:
    assert not violations("cli.main", "def up():\n    from shared.store.migrate import upgrade")
    assert not violations("cli.cluster", "def cluster():\n    import celery")


def test_the_client_commands_start_without_the_orm_or_a_framework() -> None:
    # `trainyard runs list` and the other HTTP commands: their imports are all cli.main's.
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, cli.main; print(' '.join(sys.modules))"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    heavy = {"sqlalchemy", "flask", "celery", "kombu", "tensorflow", "keras"}
    assert sorted({name.split(".")[0] for name in loaded} & heavy) == []
    assert [name for name in loaded if name.startswith("shared.store")] == []


def harness_violations(module: str, source: str) -> list[str]:
    """Imports between tests/ and bench/ against their one direction, one line each."""
    found = []
    for imported in imports_of(module, source):
        where = f"{module}:{imported.line} imports {imported.module}"
        if module.startswith("tests") and imported.root == "bench":
            found.append(f"{where}: the tests never import the benches")
        in_support = imported.module == "tests.support" or imported.module.startswith(
            "tests.support."
        )
        if module.startswith("bench") and imported.root == "tests" and not in_support:
            found.append(f"{where}: a bench uses only tests/support/ of the tests")
    return found


def test_bench_and_tests_import_each_other_one_way_only() -> None:
    found = [
        problem
        for folder in ("tests", "bench")
        for path in sorted((ROOT / folder).rglob("*.py"))
        for problem in harness_violations(module_name(path), path.read_text())
    ]
    assert not found, "\n".join(found)


@pytest.mark.parametrize(
    ("module", "source", "reason"),
    [
        ("tests.web.test_pages_scale", "from bench.runs_pages import seed_store", "never import"),
        ("tests.e2e.test_faults", "def f():\n    import bench.stack", "never import"),
        ("bench.faults", "from tests.builders import make_run", "only tests/support/"),
        ("bench.faults", "from tests.e2e import test_faults", "only tests/support/"),
    ],
)
def test_a_wrong_way_harness_import_is_caught(module: str, source: str, reason: str) -> None:
    assert any(reason in problem for problem in harness_violations(module, source))


def test_the_harness_is_allowed_into_the_benches() -> None:
    assert not harness_violations("bench.faults", "from tests.support.servers import rabbit_node")
