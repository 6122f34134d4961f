"""The Flask app factory: it reads settings and wires blueprints, errors and teardown."""

from __future__ import annotations

import logging
import socket
from typing import Any

from flask import Flask, jsonify, render_template, request
from flask_wtf.csrf import CSRFProtect
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from shared.config import Settings, get_settings
from shared.domain.errors import NotFound, PayloadTooLarge, StoreUnavailable, TrainyardError
from shared.domain.params import INT32_MAX
from shared.store.engine import Store, unreachable
from shared.store.migrate import check_schema
from web.database import register_store
from web.metrics import register_metrics
from web.queue import Dispatcher
from web.security import register_security

logger = logging.getLogger(__name__)

csrf = CSRFProtect()


def create_app(settings: Settings | None = None, check_migrations: bool = True) -> Flask:
    """Build the app on its own store; refuse a database that is not at the latest revision."""
    settings = settings or get_settings()
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        TRAINYARD=settings,
        WTF_CSRF_TIME_LIMIT=None,
    )
    store = Store(
        settings.database_url,
        pooler=settings.database_pooler,
        name=f"trainyard-web/{socket.gethostname()}",
    )
    if check_migrations:
        check_schema(store.engine)
    register_store(app, store)
    app.extensions["trainyard.dispatcher"] = Dispatcher(settings)
    register_extensions(app)
    register_security(app)
    register_blueprints(app)
    register_error_handlers(app)
    register_metrics(app, store, settings)
    return app


def register_extensions(app: Flask) -> None:
    csrf.init_app(app)


def register_blueprints(app: Flask) -> None:
    from web import api, history_api, history_pages, pages, predict_api, studies_api, study_pages

    # The API's writes are JSON from this site only (web/security.py), which no cross-site form
    # can send: they need no CSRF token. The dashboard's forms keep theirs.
    csrf.exempt(api.bp)
    csrf.exempt(studies_api.bp)
    csrf.exempt(predict_api.bp)
    csrf.exempt(history_api.bp)
    app.url_value_preprocessor(_check_run_id)
    app.register_blueprint(api.bp)
    app.register_blueprint(studies_api.bp)
    app.register_blueprint(predict_api.bp)
    app.register_blueprint(history_api.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(study_pages.bp)
    app.register_blueprint(history_pages.bp)


def _check_run_id(endpoint: str | None, values: dict[str, Any] | None) -> None:
    # Ids no database column can hold are "no such run", before any query sees them.
    for key in ("run_id", "study_id"):
        if values and key in values and not 1 <= values[key] <= INT32_MAX:
            raise NotFound(
                f"{key.removesuffix('_id')} {values[key]} does not exist", {"id": "no such id"}
            )


def _wants_json() -> bool:
    return request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json"


def _error_response(error: TrainyardError) -> Any:
    if _wants_json():
        return jsonify(error.to_dict()), error.status
    return render_template("error.html", error=error), error.status


def register_error_handlers(app: Flask) -> None:
    """Map domain errors and HTTP errors onto the one JSON shape (or an HTML page)."""

    @app.errorhandler(TrainyardError)
    def _domain(error: TrainyardError) -> Any:
        response = _error_response(error)
        if error.retry_after is not None:
            return (*response, {"Retry-After": str(error.retry_after)})
        return response

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(_: RequestEntityTooLarge) -> Any:
        limit = app.config["MAX_CONTENT_LENGTH"]
        return _error_response(
            PayloadTooLarge(f"the body is over {limit} bytes", {"body": f"at most {limit} bytes"})
        )

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException) -> Any:
        domain = TrainyardError(error.description or error.name)
        domain.status = error.code or 500
        domain.code = error.name.lower().replace(" ", "_")
        response = _error_response(domain)
        if isinstance(response, tuple) and error.code == 405:
            return (*response, {"Allow": ", ".join(error.valid_methods or [])})
        return response

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Any:
        if unreachable(error):
            logger.warning(
                "%s %s: the store is unreachable: %s", request.method, request.path, error
            )
            return _domain(StoreUnavailable("the results store is unreachable; try again shortly"))
        logger.exception("unhandled error on %s %s", request.method, request.path)
        domain = TrainyardError("internal error; see the server log")
        domain.status, domain.code = 500, "internal"
        return _error_response(domain)
