"""What the app holds (settings, store, dispatcher) and one database session per request."""

from __future__ import annotations

from flask import Flask, current_app, g
from sqlalchemy.orm import Session

from shared.config import Settings
from shared.store.engine import Store
from web.queue import Dispatcher


def app_settings() -> Settings:
    """The settings the current app was built with."""
    return current_app.config["TRAINYARD"]


def app_store() -> Store:
    """The current app's results store."""
    return current_app.extensions["trainyard.store"]


def dispatcher() -> Dispatcher:
    """The current app's run dispatcher (admission, commit, then the message)."""
    return current_app.extensions["trainyard.dispatcher"]


def get_session() -> Session:
    """Return this request's session, opening it on first use."""
    if "db_session" not in g:
        g.db_session = app_store().session()
    return g.db_session


def _close_session(exc: BaseException | None) -> None:
    session: Session | None = g.pop("db_session", None)
    if session is None:
        return
    if exc is not None:
        session.rollback()
    session.close()


def register_store(app: Flask, store: Store) -> None:
    """Keep the store on the app and close each request's session when the request ends."""
    app.extensions["trainyard.store"] = store
    app.teardown_appcontext(_close_session)
