"""One door, one key: the dashboard and the API protected alike, no cross-site writes, no 500s."""

from __future__ import annotations

import stat
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from shared.config import Settings, stored_secret
from shared.domain.status import RunStatus
from shared.store.models import Run
from tests.builders import make_run
from tests.support.app import client_for, create_test_app
from tests.support.machine import ROOT
from tests.support.pages import csrf_token, find, form_data
from tests.support.processes import web_process
from tests.support.runs import run_count

TOKEN = "s3cret-token"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


def app_with(settings: Settings, **changes: Any) -> Flask:
    return create_test_app(settings.with_overrides(**changes))


def sign_in(client: FlaskClient, token: str = TOKEN) -> Any:
    return client.post(
        "/login", data={"csrf_token": csrf_token(client, "/login"), "token": token, "next": "/runs"}
    )


# Sign-in when a token is set.


def test_with_a_token_the_dashboard_writes_need_a_signed_in_session(
    idle: Settings, session: Session
) -> None:
    client = app_with(idle, api_token=TOKEN).test_client()
    run = make_run(session)
    token = csrf_token(client)
    refused = client.post("/runs/new", data=form_data(token))
    assert refused.status_code == 303 and "/login?next=" in refused.headers["Location"]
    refused = client.post(f"/runs/{run.id}/cancel", data={"csrf_token": token})
    assert refused.status_code == 303
    assert run_count(session) == 1 and session.get(Run, run.id).status == RunStatus.QUEUED

    wrong = sign_in(client, "not it")
    assert wrong.status_code == 401 and find(wrong.get_data(as_text=True), "p", id="login-error")
    assert client.post("/runs/new", data=form_data(csrf_token(client))).status_code == 303

    signed = sign_in(client)
    assert signed.status_code == 303 and signed.headers["Location"] == "/runs"
    cookie = signed.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    queued = client.post("/runs/new", data=form_data(csrf_token(client)))
    assert queued.status_code == 302 and "/runs/" in queued.headers["Location"]
    assert client.post(f"/runs/{run.id}/cancel", data={"csrf_token": csrf_token(client)})
    session.expire_all()
    assert run_count(session) == 2 and session.get(Run, run.id).status == RunStatus.CANCELLED

    client.post("/logout", data={"csrf_token": csrf_token(client)})
    assert client.post("/runs/new", data=form_data(csrf_token(client))).status_code == 303


def test_a_signed_in_session_opens_the_api_writes_too(idle: Settings) -> None:
    client = app_with(idle, api_token=TOKEN).test_client()
    assert client.post("/api/runs", json={}).status_code == 401
    sign_in(client)
    assert client.post("/api/runs", json={}).status_code == 202


def test_the_session_cookie_is_secure_behind_https(idle: Settings) -> None:
    client = app_with(idle, api_token=TOKEN, trusted_proxies=1).test_client()
    token = csrf_token(client, "/login")
    answer = client.post(
        "/login",
        data={"csrf_token": token, "token": TOKEN},
        headers={"X-Forwarded-Proto": "https", "Referer": "https://localhost/login"},
        base_url="https://localhost",
    )
    assert "Secure" in answer.headers["Set-Cookie"]


def test_private_closes_the_reads_too(idle: Settings, session: Session) -> None:
    run = make_run(session)
    client = app_with(idle, api_token=TOKEN, private=True).test_client()
    for path in ("/runs", f"/runs/{run.id}", "/compare?ids=1,2", "/workers", "/api/docs"):
        answer = client.get(path)
        assert answer.status_code == 303, path
        assert answer.headers["Location"].startswith("/login?next=")
    for path in ("/api/runs", f"/api/runs/{run.id}", "/api/queue", "/api/openapi.json"):
        answer = client.get(path)
        assert answer.status_code == 401 and "Bearer" in answer.headers["WWW-Authenticate"], path
        assert client.get(path, headers=BEARER).status_code == 200, path
    assert client.get("/api/health").status_code == 200  # load balancers still see it
    assert client.get("/login").status_code == 200
    sign_in(client)
    assert client.get("/runs").status_code == 200


def test_reads_stay_open_by_default(idle: Settings, session: Session) -> None:
    client = app_with(idle, api_token=TOKEN).test_client()
    assert client.get("/runs").status_code == 200 and client.get("/api/runs").status_code == 200


def test_sign_in_never_sends_you_to_another_site(idle: Settings) -> None:
    client = app_with(idle, api_token=TOKEN).test_client()
    for target in (
        "https://evil.example/",
        "//evil.example/x",
        "///evil.example",
        "/\\evil",
        "javascript:x",
    ):
        answer = client.post(
            "/login",
            data={"csrf_token": csrf_token(client, "/login"), "token": TOKEN, "next": target},
        )
        assert answer.headers["Location"] == "/", target


# No cross-site writes.


def test_a_bodiless_no_cors_post_is_refused_without_a_token(
    idle: Settings, session: Session
) -> None:
    client = app_with(idle).test_client()
    run = make_run(session)
    # What `fetch(url, {mode: "no-cors", method: "POST"})` from another site sends.
    for path in ("/api/runs", f"/api/runs/{run.id}/cancel", f"/api/runs/{run.id}/clone"):
        answer = client.post(path)
        assert answer.status_code == 415, path
        answer = client.post(path, data="{}", content_type="text/plain")
        assert answer.status_code == 415, path
    assert run_count(session) == 1


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ],
)
def test_cross_site_writes_are_refused(
    idle: Settings, session: Session, headers: dict[str, str]
) -> None:
    client = app_with(idle).test_client()
    answer = client.post("/api/runs", json={}, headers=headers)
    assert answer.status_code == 403 and answer.get_json()["error"]["code"] == "forbidden"
    form = app_with(idle, api_token=None).test_client()
    assert (
        form.post("/runs/new", data=form_data(csrf_token(form)), headers=headers).status_code == 403
    )
    assert run_count(session) == 0


def test_same_origin_writes_pass(idle: Settings) -> None:
    client = app_with(idle).test_client()
    headers = {"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"}
    assert client.post("/api/runs", json={}, headers=headers).status_code == 202


# One secret for every web process.


def test_the_stored_secret_is_made_once_private_and_shared(tmp_path: Path) -> None:
    path = tmp_path / "home" / "secret_key"
    first = stored_secret(path)
    assert len(first) == 64 and stored_secret(path) == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # Processes starting together agree on one.
    other = tmp_path / "race" / "secret_key"
    code = f"from shared.config import stored_secret; from pathlib import Path; print(stored_secret(Path({str(other)!r})))"
    children = [
        subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        for _ in range(8)
    ]
    assert len({child.communicate()[0].strip() for child in children}) == 1


@pytest.mark.e2e
def test_a_hundred_form_posts_across_gunicorn_workers_never_fail_csrf(
    idle: Settings, tmp_path: Path
) -> None:
    """`trainyard web` without TRAINYARD_SECRET_KEY: its two workers share the stored secret."""
    import requests

    keyless = idle.with_overrides(secret_key="", home=tmp_path / "home")
    failures = 0
    with web_process(keyless) as url:
        for _ in range(100):
            with requests.Session() as browser:  # a new visitor each time, its sockets closed
                page = browser.get(f"{url}/runs/new", timeout=10).text
                token = find(page, "input", name="csrf_token")[0]["attrs"]["value"]
                answer = browser.post(
                    f"{url}/runs/999999/cancel",
                    data={"csrf_token": token},
                    allow_redirects=False,
                    timeout=10,
                )
            failures += answer.status_code == 400
    assert failures == 0
    assert (tmp_path / "home" / "secret_key").exists()


# Headers.


def test_every_page_carries_the_protective_headers(client: FlaskClient) -> None:
    for path in ("/runs", "/runs/new", "/api/runs", "/api/docs", "/login"):
        headers = client.get(path).headers
        policy = headers["Content-Security-Policy"]
        for directive in ("script-src 'self'", "style-src 'self'", "img-src 'self' data:",
                          "frame-ancestors 'none'"):  # fmt: skip
            assert directive in policy, (path, directive)
        assert "unsafe-inline" not in policy
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["Referrer-Policy"] == "same-origin"
        assert headers["X-Content-Type-Options"] == "nosniff"


def test_no_template_holds_inline_styles_or_scripts() -> None:
    for template in (ROOT / "web" / "templates").glob("*.html"):
        text = template.read_text()
        assert " style=" not in text and "<style" not in text, template.name
        for script in find(text, "script"):
            assert "src" in script["attrs"] or script["attrs"].get("type") == "application/json"


# Inputs that used to end in a 500.


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/runs/new?clone=%C2%B2", 400),  # a superscript two
        ("GET", "/compare?ids=1,2&baseline=%C2%B2", 400),
        ("GET", "/runs/99999999999999999999", 404),
        ("GET", "/runs/99999999999999999999/evaluation", 404),
        ("GET", "/compare?ids=1,99999999999999999999", 400),
        ("GET", "/api/runs/99999999999999999999", 404),
        ("POST", "/runs/new?clone=abc", 400),
    ],
)
def test_bad_inputs_are_4xx(client: FlaskClient, method: str, path: str, status: int) -> None:
    assert client.open(path, method=method, data={"epochs": "x"}).status_code == status


def test_a_non_ascii_bearer_token_is_a_401(idle: Settings) -> None:
    client = app_with(idle, api_token=TOKEN).test_client()
    answer = client.post("/api/runs", json={}, headers={"Authorization": "Bearer jöö²"})
    assert answer.status_code == 401


# Bounded jobs.


def test_a_job_too_costly_to_run_is_refused_naming_its_estimate(
    client: FlaskClient, session: Session
) -> None:
    huge = {"hidden_units": 4096, "batch_size": 1, "epochs": 100}
    answer = client.post("/api/runs", json={"params": huge})
    assert answer.status_code == 422
    error = answer.get_json()["error"]
    assert "TFLOP" in error["message"] and "TRAINYARD_MAX_JOB_TFLOP" in error["message"]
    assert "limit 400 TFLOP" in error["fields"]["params"]
    assert run_count(session) == 0
    # The quickstart's recipe for 100 epochs is fine.
    assert client.post("/api/runs", json={"params": {"epochs": 100}}).status_code == 202


def test_the_form_explains_a_job_too_costly(csrf_app: Flask, session: Session) -> None:
    client = csrf_app.test_client()
    answer = client.post(
        "/runs/new",
        data=form_data(csrf_token(client), hidden_units="4096", batch_size="1", epochs="100"),
    )
    assert answer.status_code == 422
    assert "TFLOP" in find(answer.get_data(as_text=True), "p", id="form-refused")[0]["text"]
    assert run_count(session) == 0


def test_a_full_queue_answers_429_with_retry_after(idle: Settings, session: Session) -> None:
    client = app_with(idle, max_queued_runs=2).test_client()
    assert [client.post("/api/runs", json={}).status_code for _ in range(2)] == [202, 202]
    full = client.post("/api/runs", json={})
    assert full.status_code == 429 and int(full.headers["Retry-After"]) > 0
    assert "queue" in full.get_json()["error"]["fields"]
    assert run_count(session) == 2


# Names, exports, health.


@pytest.mark.parametrize("name", ["clear\x1b[2J", "bell\x07", "line\nbreak", "rtl\u202eevil"])
def test_control_characters_in_names_are_refused(client: FlaskClient, name: str) -> None:
    answer = client.post("/api/runs", json={"name": name})
    assert answer.status_code == 422 and "name" in answer.get_json()["error"]["fields"]


def test_health_tells_anonymous_callers_which_check_failed_not_why(idle: Settings) -> None:
    down = idle.with_overrides(broker_url="redis://127.0.0.1:1/0", api_token=TOKEN)
    client = client_for(down)
    anonymous = client.get("/api/health").get_json()["checks"]["broker"]
    assert anonymous == {"ok": False, "detail": "unreachable"}
    detailed = client.get("/api/health", headers=BEARER).get_json()["checks"]["broker"]
    assert detailed["ok"] is False and "127.0.0.1" in detailed["detail"]


@pytest.mark.e2e
def test_the_live_server_refuses_what_the_app_refuses(idle: Settings) -> None:
    """The same rules through gunicorn: a bodiless POST is 415, a cross-site one 403."""
    with web_process(idle) as url:
        request = urllib.request.Request(f"{url}/api/runs", method="POST", data=b"")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        refused.value.close()
        assert refused.value.code == 415
        request = urllib.request.Request(
            f"{url}/api/runs",
            method="POST",
            data=b"{}",
            headers={"Content-Type": "application/json", "Origin": "https://evil.example"},
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        refused.value.close()
        assert refused.value.code == 403
