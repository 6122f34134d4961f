"""Health checks: is the database reachable, is the broker reachable, is the schema at the head."""

from __future__ import annotations

import logging

from kombu import Connection
from sqlalchemy import Engine

from shared.config import Settings
from shared.read.models import Check, HealthOut
from shared.store.engine import ping
from shared.store.migrate import current_revision, head_revision

logger = logging.getLogger(__name__)
BROKER_TIMEOUT = 3.0


def check_database(engine: Engine) -> tuple[bool, str]:
    """Run `SELECT 1` on the results store."""
    try:
        ping(engine)
    except Exception as exc:
        logger.warning("health: database unreachable: %s", exc)
        return False, f"unreachable: {exc.__class__.__name__}: {exc}"
    return True, f"reachable ({engine.dialect.name})"


def check_broker(settings: Settings) -> tuple[bool, str]:
    """Open (and close) one connection to the Celery broker, trying once."""
    try:
        with Connection(settings.broker_url, connect_timeout=BROKER_TIMEOUT) as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, timeout=BROKER_TIMEOUT)
            transport = connection.transport_cls
    except Exception as exc:
        logger.warning("health: broker unreachable: %s", exc)
        return False, f"unreachable: {exc.__class__.__name__}: {exc}"
    return True, f"reachable ({transport})"


def check_schema(engine: Engine) -> tuple[bool, str]:
    """Compare the database's revision with the code's latest."""
    head = head_revision()
    try:
        current = current_revision(engine)
    except Exception as exc:
        logger.warning("health: schema revision unknown: %s", exc)
        return False, f"unknown: {exc.__class__.__name__}: {exc}"
    if current != head:
        return False, f"at {current or 'no revision'}; the code needs {head}"
    return True, f"at head {head}"


# What anonymous callers learn of a failed check: which one, not the driver's message (that names
# hosts and users; it goes to the log).
PUBLIC_FAILURE = {
    "database": "unreachable",
    "broker": "unreachable",
    "schema": "not at the code's revision: run `trainyard db upgrade`",
}


def health(engine: Engine, settings: Settings, detailed: bool = False) -> HealthOut:
    """Every check's result, and whether all passed; the full details only when `detailed`."""
    checks = {
        "database": check_database(engine),
        "broker": check_broker(settings),
        "schema": check_schema(engine),
    }
    return HealthOut(
        ok=all(ok for ok, _ in checks.values()),
        checks={
            name: Check(
                ok=ok, detail=detail if detailed else ("ok" if ok else PUBLIC_FAILURE[name])
            )
            for name, (ok, detail) in checks.items()
        },
    )
