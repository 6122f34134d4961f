"""Waiting on real parts: `wait_for`, the one poll loop, and `until_finished`, for runs and studies."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from shared.domain.status import FINISHED_STATUSES

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from cli.client import Client
    from shared.store.engine import Store
    from shared.store.models import Run

T = TypeVar("T")
# A study is done once none of its runs is queued or running.
STUDY_BUSY = ("queued", "running")


def wait_for(
    check: Callable[[], T],
    timeout: float,
    interval: float = 0.2,
    what: str = "condition",
    ignoring: tuple[type[Exception], ...] = (),
) -> T:
    """Poll `check` until it returns something truthy and return that; fail after `timeout`
    seconds. A `check` raising one of `ignoring` counts as "not yet" (a server restarting)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while True:
        try:
            value = check()
        except ignoring as exc:
            value, last = None, exc  # type: ignore[assignment]
        else:
            last = None
        if value:
            return value
        if time.monotonic() > deadline:
            why = f" (last: {last!r})" if last is not None else ""
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{why}")
        time.sleep(interval)


@overload
def until_finished(
    source: Store | Session,
    *ids: int,
    study: Literal[False] = False,
    timeout: float = 240,
    interval: float = 0.3,
    alive: Callable[[], object] | None = None,
    ignoring: tuple[type[Exception], ...] = (),
) -> list[Run]: ...
@overload
def until_finished(
    source: Client,
    *ids: int,
    study: bool = False,
    timeout: float = 240,
    interval: float = 0.3,
    alive: Callable[[], object] | None = None,
    ignoring: tuple[type[Exception], ...] = (),
) -> list[dict[str, Any]]: ...
def until_finished(
    source: Store | Session | Client,
    *ids: int,
    study: bool = False,
    timeout: float = 240,
    interval: float = 0.3,
    alive: Callable[[], object] | None = None,
    ignoring: tuple[type[Exception], ...] = (),
) -> list[Run] | list[dict[str, Any]]:
    """Wait until every run (or, with `study`, every study) of `ids` has finished; return them in
    the order asked, as the source has them: Run rows from a store or a session (see
    `runs.read_run`), the API's JSON from a client. `alive`, called before each look, fails the
    wait early when what should finish them is gone (a cluster that exited, say); `ignoring` is
    `wait_for`'s."""
    from cli.client import Client
    from tests.support.runs import read_run

    def read(one: int) -> Any:
        if not isinstance(source, Client):
            assert not study, "studies are read through the API"
            return read_run(source, one)
        return source.study(one) if study else source.run(one)

    def finished(item: Any) -> bool:
        if isinstance(item, dict):
            return (
                item["status"] not in STUDY_BUSY if study else item["status"] in FINISHED_STATUSES
            )
        return item.status in FINISHED_STATUSES

    def all_finished() -> list[Any] | None:
        if alive is not None:
            alive()
        items = [read(one) for one in ids]
        return items if all(finished(item) for item in items) else None

    kind = "studies" if study else "runs"
    return wait_for(
        all_finished, timeout, interval, what=f"{kind} {list(ids)} to finish", ignoring=ignoring
    )
