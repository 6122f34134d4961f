"""One door, one key: who may read and write, no cross-site writes, and the browser's guard rails.

With `TRAINYARD_API_TOKEN` set, every write needs the token: as `Authorization: Bearer <token>`
(the API, the CLI) or as a dashboard session signed in with it. `TRAINYARD_PRIVATE` closes reads
too. Whatever the token, a write that a browser made on another site's behalf is refused (the
`Origin` and `Sec-Fetch-Site` it sends), API writes must be JSON (which no form and no "simple"
cross-site request can send), and forms carry a CSRF token.
"""

from __future__ import annotations

import hmac
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Request, Response, redirect, request, session, url_for
from flask.sessions import SecureCookieSessionInterface
from werkzeug.middleware.proxy_fix import ProxyFix

from shared.domain.errors import Forbidden, Unauthorized, UnsupportedMediaType
from web.database import app_settings

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Reachable without the token whatever the settings: signing in, its assets, and the health
# check a load balancer polls (it says which check failed, not why, to anonymous callers), and
# /metrics, which checks its own token (web/metrics.py) and answers a scraper 401, not a login page.
PUBLIC_ENDPOINTS = frozenset(
    {"pages.login", "pages.favicon", "static", "api.health", "metrics.metrics"}
)
# POSTs that change nothing (a prediction's batch does not fit a URL): the token rule of reads,
# and bodies that need not be JSON (a PNG drawing).
READING_POSTS = frozenset({"predict.predict"})
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",  # the misclassified digits are inline PNGs
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def token_matches(given: str, token: str) -> bool:
    """Compare in constant time; any text (a non-ASCII header too) is simply a wrong token."""
    return hmac.compare_digest(given.encode("utf-8", "replace"), token.encode("utf-8", "replace"))


def bearer_token(req: Request) -> str | None:
    scheme, _, value = req.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def signed_in() -> bool:
    """Whether this request carries the token (bearer) or a session signed in with it."""
    token = app_settings().api_token
    if not token:
        return True
    given = bearer_token(request)
    if given is not None:
        return token_matches(given, token)
    return session.get("signed_in") is True


def sign_in(given: str) -> bool:
    """Start a signed-in session when `given` is the token."""
    token = app_settings().api_token
    if not token or not token_matches(given, token):
        return False
    session.clear()
    session["signed_in"] = True
    session.permanent = True
    return True


def sign_out() -> None:
    session.clear()


def _is_api() -> bool:
    """A request to the JSON API (its HTML docs page is a page like the others)."""
    return request.path.startswith("/api/") and request.endpoint != "api.docs"


def _refuse_cross_site() -> None:
    """A write must come from this site: a browser says where a request comes from."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        raise Forbidden(
            "cross-site writes are refused", {"Sec-Fetch-Site": f"{site}, not same-origin"}
        )
    origin = request.headers.get("Origin")
    if origin is not None:
        ours = urlsplit(request.host_url)
        theirs = urlsplit(origin)
        if (theirs.scheme, theirs.netloc) != (ours.scheme, ours.netloc):
            raise Forbidden(
                "cross-site writes are refused", {"Origin": f"{origin} is not this site"}
            )


def _check_request() -> Any:
    """Run before every request: cross-site writes, the token, then JSON API writes."""
    if request.routing_exception is not None:
        return None  # no such page or method: that answer (404, 405) says it best
    write = request.method not in SAFE_METHODS
    if write:
        _refuse_cross_site()
    settings = app_settings()
    reading = request.endpoint in READING_POSTS
    needs_token = settings.api_token and ((write and not reading) or settings.private)
    if request.endpoint in PUBLIC_ENDPOINTS or not needs_token or signed_in():
        # A DELETE may come without a body: no HTML form can send one cross-site, and a
        # cross-origin fetch of it needs a CORS preflight this app never grants.
        bodiless_delete = request.method == "DELETE" and not request.get_data(cache=True)
        if write and _is_api() and not request.is_json and not reading and not bodiless_delete:
            raise UnsupportedMediaType(
                "API writes are JSON: send Content-Type: application/json (an empty body: {})",
                {"Content-Type": "must be application/json"},
            )
        return None
    if _is_api() or request.accept_mimetypes.best == "application/json":
        raise Unauthorized(
            "this needs the token: Authorization: Bearer <token>",
            {"Authorization": "missing or wrong bearer token"},
        )
    # A page: sign in first, then come back (to the page a refused form was posted from).
    back = request.full_path
    if request.method != "GET":
        referrer = request.referrer or ""
        back = referrer.removeprefix(request.host_url.rstrip("/")) if referrer else "/"
    return redirect(url_for("pages.login", next=safe_next(back)), 303)


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path on this site, never another site."""
    target = target or "/"
    parts = urlsplit(target)
    # "//host", "///host" and "/\\host" are other sites to a browser.
    if parts.scheme or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _headers(response: Response) -> Response:
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    if response.status_code == 401 and _is_api():
        response.headers.setdefault("WWW-Authenticate", 'Bearer realm="trainyard"')
    return response


class _SessionInterface(SecureCookieSessionInterface):
    """The session cookie is Secure whenever the request came over HTTPS (directly, or through
    a trusted proxy), without a setting to forget."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"]) or request.is_secure


def register_security(app: Flask) -> None:
    """Wire the checks, the headers and the session cookie into the app."""
    settings = app.config["TRAINYARD"]
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax")
    app.session_interface = _SessionInterface()
    if settings.trusted_proxies:
        hops = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)
    app.before_request(_check_request)
    app.after_request(_headers)
    app.context_processor(
        lambda: {"auth": {"required": bool(settings.api_token), "signed_in": signed_in()}}
    )
