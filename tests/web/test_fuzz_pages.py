"""Property-based: arbitrary path segments, query strings and form bodies at every dashboard route
never end in a 500 (hypothesis; TRAINYARD_FUZZ_EXAMPLES widens it)."""

from __future__ import annotations

import os
import re
from urllib.parse import quote, urlencode

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session

from shared.domain.params import PARAM_NAMES
from shared.domain.status import RunStatus
from tests.builders import make_run

EXAMPLES = int(os.environ.get("TRAINYARD_FUZZ_EXAMPLES", "150"))
# Keys the pages read, and the hyperparameter filters: fuzzing them reaches real validation.
KEYS = [
    "ids", "baseline", "all", "clone", "status", "q", "sort", "page", "limit", "test_accuracy_min",
    "created_after", "next", "token", "name", "csrf_token",
    *PARAM_NAMES, *(f"{name}_min" for name in PARAM_NAMES), *(f"{name}_max" for name in PARAM_NAMES),
]  # fmt: skip
text = st.text(max_size=40)
# Hypothesis favours small integers: name the edges of the columns' types too.
EDGES = [0, -1, 2**31 - 1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, 10**20, -(2**63) - 1]
numbers = st.one_of(st.integers(min_value=-(2**70), max_value=2**70), st.sampled_from(EDGES)).map(
    str
)
values = st.one_of(text, numbers, st.sampled_from(["", "1", "2,3", "true", "-id", "²", "1e309"]))
pairs = st.lists(st.tuples(st.one_of(st.sampled_from(KEYS), text), values), max_size=8)
segment = st.one_of(numbers, text.filter(lambda s: s not in ("", ".", "..")))


def dashboard_routes(app: Flask) -> list[tuple[str, str]]:
    """Every (method, rule) of the dashboard: its pages, forms and sign-in."""
    routes = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("pages.") or rule.endpoint == "static":
            for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
                routes.append((method, rule.rule))
    return routes


@pytest.fixture()
def fuzzed(app: Flask, session: Session) -> Flask:
    make_run(session, status=RunStatus.SUCCEEDED, epochs_done=2, test_accuracy=0.9, epochs=2)
    make_run(session)
    return app


def fill(rule: str, segments: list[str]) -> str:
    """The rule's path with each converter's place taken by a (quoted) fuzzed segment."""
    parts = iter(segments)
    return re.sub(r"<[^>]+>", lambda _: quote(next(parts, "1"), safe=""), rule)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    choice=st.integers(min_value=0, max_value=10_000),
    segments=st.lists(segment, min_size=3, max_size=3),
    query=pairs,
    form=pairs,
    extra=st.one_of(st.none(), segment),
)
def test_no_dashboard_request_ends_in_a_500(
    fuzzed: Flask,
    choice: int,
    segments: list[str],
    query: list[tuple[str, str]],
    form: list[tuple[str, str]],
    extra: str | None,
) -> None:
    routes = dashboard_routes(fuzzed)
    method, rule = routes[choice % len(routes)]
    path = fill(rule, segments)
    if extra is not None:
        path = path.rstrip("/") + "/" + quote(extra, safe="")
    url = f"{path}?{urlencode(query)}" if query else path
    for csrf in (False, True):
        fuzzed.config["WTF_CSRF_ENABLED"] = csrf
        # Closed at once: a static file's answer holds the file open until then.
        with fuzzed.test_client().open(url, method=method, data=dict(form)) as answer:
            assert answer.status_code < 500, (
                method,
                url,
                form,
                answer.get_data(as_text=True)[:500],
            )
