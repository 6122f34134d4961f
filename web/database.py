"""One database session per request, removed at teardown and rolled back on error."""

from __future__ import annotations

from flask import Flask, g
from sqlalchemy.orm import Session

from shared import db


def get_session() -> Session:
    """Return this request's session, opening it on first use."""
    if "db_session" not in g:
        g.db_session = db.new_session()
    return g.db_session


def _close_session(exc: BaseException | None) -> None:
    session: Session | None = g.pop("db_session", None)
    if session is None:
        return
    if exc is not None:
        session.rollback()
    session.close()


def register_teardown(app: Flask) -> None:
    """Close the request's session when the request ends."""
    app.teardown_appcontext(_close_session)
